/**
 * Writes docs/spec.md, the lifecycle spec reference, from the schema itself (`npm run docs:spec`), so the page cannot
 * drift from what `mlctl run` accepts: test/unit/spec-docs.test.ts fails when the file differs from what this renders.
 *
 * Two sources, walked in lockstep from `LifecycleSpec`:
 * - the zod schema gives every field path, its type, whether it is required, its default, and its bounds or values
 *   (`z.toJSONSchema(leaf, { io: 'input' })` for the leaves);
 * - the TypeScript source gives each field's description: the JSDoc on the object-literal property that declares it,
 *   or else on the schema constant the property names (`monitoring: MonitoringSpec`), followed across files with the
 *   compiler API. A field with neither has no description. String messages of `.refine(...)` calls on a field's
 *   schema are listed with its bounds (`at least 1s`).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { format, resolveConfig } from 'prettier';
import ts from 'typescript';
import { z } from 'zod';
import { formatDurationMs, MAX_DURATION_TEXT } from '../shared/duration';
import { own } from '../shared/own';
import { LifecycleSpec } from '../shared/spec';

/** One row of the reference: a field and what the schema says about it. */
export interface SpecField {
  path: string;
  type: string;
  /** `yes`, `no`, or `in <parent>` (required when its parent is given; the parent itself has a default). */
  required: string;
  /** As a spec writes it (`30m`, `0.25`, `{ ... }`), or `each field's default`; empty when there is none. */
  default: string;
  /** The field whose default object gives this field's default, when it has none of its own. */
  defaultFrom?: string;
  bounds: string[];
  description: string;
}

/** The minimal view of a zod 4 schema's definition this walk reads. */
interface Def {
  type: string;
  innerType?: z.ZodType;
  defaultValue?: unknown;
  in?: z.ZodType;
  out?: z.ZodType;
  shape?: Record<string, z.ZodType>;
  element?: z.ZodType;
  keyType?: z.ZodType;
  valueType?: z.ZodType;
  options?: z.ZodType[];
  values?: unknown[];
  entries?: Record<string, string | number>;
}

const defOf = (schema: z.ZodType): Def => (schema as unknown as { _zod: { def: Def } })._zod.def;

/** What the source says about one schema expression: its structural core, descriptions and refine messages. */
interface Spine {
  /** `z.object(...)` argument (properties by name), array element, record value or union options. */
  properties?: Map<string, ts.Expression>;
  docs: Map<string, string>;
  element?: ts.Expression;
  value?: ts.Expression;
  options?: ts.Expression[];
  doc?: string;
  refines: string[];
}

/** Reads JSDoc and structure out of the source files `LifecycleSpec` is built from. */
class SourceReader {
  private readonly checker: ts.TypeChecker;

  constructor(private readonly program: ts.Program) {
    this.checker = program.getTypeChecker();
  }

  /** The initializer of the exported `name` in `file`. */
  exported(file: string, name: string): ts.Expression | undefined {
    const source = this.program.getSourceFile(file);
    if (!source) throw new Error(`${file} is not part of the program`);
    for (const statement of source.statements) {
      if (!ts.isVariableStatement(statement)) continue;
      for (const decl of statement.declarationList.declarations) {
        if (ts.isIdentifier(decl.name) && decl.name.text === name && decl.initializer) return decl.initializer;
      }
    }
    return undefined;
  }

  /** The JSDoc text of a node (a property, or a variable declaration through its statement), on one line. */
  docOf(node: ts.Node): string | undefined {
    const texts = ts
      .getJSDocCommentsAndTags(node)
      .filter(ts.isJSDoc)
      .map((doc) => ts.getTextOfJSDocComment(doc.comment) ?? '')
      .filter((text) => text.trim() !== '');
    const text = texts.at(-1);
    return text === undefined ? undefined : text.replace(/\s+/g, ' ').trim();
  }

  /** The variable declaration an identifier names, through imports. */
  private declarationOf(id: ts.Identifier): ts.VariableDeclaration | undefined {
    let symbol = this.checker.getSymbolAtLocation(id);
    if (symbol && symbol.flags & ts.SymbolFlags.Alias) symbol = this.checker.getAliasedSymbol(symbol);
    const decl = symbol?.valueDeclaration;
    return decl && ts.isVariableDeclaration(decl) ? decl : undefined;
  }

  /** The properties of an object literal, spreads of named object literals included, in order. */
  private objectProperties(literal: ts.ObjectLiteralExpression, spine: Spine): void {
    spine.properties ??= new Map();
    for (const prop of literal.properties) {
      if (ts.isPropertyAssignment(prop) && (ts.isIdentifier(prop.name) || ts.isStringLiteral(prop.name))) {
        spine.properties.set(prop.name.text, prop.initializer);
        const doc = this.docOf(prop);
        if (doc) spine.docs.set(prop.name.text, doc);
      } else if (ts.isSpreadAssignment(prop) && ts.isIdentifier(prop.expression)) {
        const init = this.declarationOf(prop.expression)?.initializer;
        if (init && ts.isObjectLiteralExpression(init)) this.objectProperties(init, spine);
      }
    }
  }

  /**
   * Follows a schema expression down its method chain (`.default()`, `.strict()`, `.refine()`, ...) and through the
   * constants it names, to the call that gives it its shape.
   */
  spine(expr: ts.Expression | undefined, spine: Spine = { docs: new Map(), refines: [] }): Spine {
    while (expr && (ts.isParenthesizedExpression(expr) || ts.isAsExpression(expr) || ts.isSatisfiesExpression(expr))) {
      expr = expr.expression;
    }
    if (!expr) return spine;
    if (ts.isIdentifier(expr)) {
      const decl = this.declarationOf(expr);
      if (!decl?.initializer) return spine;
      spine.doc ??= this.docOf(decl);
      return this.spine(decl.initializer, spine);
    }
    if (!ts.isCallExpression(expr)) return spine;
    const callee = expr.expression;
    const args = expr.arguments;
    if (ts.isIdentifier(callee)) {
      // The project's guarded record: nameRecord(key, value).
      if (callee.text === 'nameRecord') spine.value = args[1];
      return spine;
    }
    if (!ts.isPropertyAccessExpression(callee)) return spine;
    const method = callee.name.text;
    if (ts.isIdentifier(callee.expression) && callee.expression.text === 'z') {
      const first = args[0];
      if (['object', 'strictObject', 'looseObject'].includes(method) && first && ts.isObjectLiteralExpression(first)) {
        this.objectProperties(first, spine);
      } else if (method === 'array') spine.element = first;
      else if (method === 'record' || method === 'partialRecord') spine.value = args[1];
      else if (method === 'preprocess') return this.spine(args[1], spine);
      else if (method === 'union' || method === 'discriminatedUnion') {
        const list = method === 'union' ? first : args[1];
        if (list && ts.isArrayLiteralExpression(list)) spine.options = [...list.elements];
      }
      return spine;
    }
    if (method === 'refine') {
      const message = args[1];
      if (message && ts.isStringLiteralLike(message)) spine.refines.push(message.text);
    }
    return this.spine(callee.expression, spine);
  }
}

/** A value as a spec would write it: durations as `90s`, the rest as compact JSON. */
function showValue(value: unknown, duration: boolean): string {
  if (duration && typeof value === 'number') return value === 0 ? '0' : formatDurationMs(value);
  return JSON.stringify(value).replace(/":/g, '": ').replace(/,"/g, ', "');
}

const isDuration = (def: Def): boolean =>
  def.type === 'pipe' &&
  defOf(def.in!).type === 'union' &&
  defOf(def.out!).type === 'transform' &&
  (defOf(def.in!).options ?? []).map((o) => defOf(o).type).join() === 'number,string';

/** A schema without the wrappers that do not change its shape, and what they said. */
function unwrap(schema: z.ZodType): { core: z.ZodType; optional: boolean; defaultValue?: { value: unknown } } {
  let optional = false;
  let defaultValue: { value: unknown } | undefined;
  let core = schema;
  for (;;) {
    const def = defOf(core);
    if (def.type === 'optional') optional = true;
    else if (def.type === 'default' || def.type === 'prefault') {
      optional = true;
      defaultValue ??= { value: def.defaultValue };
    } else if (def.type === 'nullable' || def.type === 'readonly' || def.type === 'catch') {
      // The same shape, as far as a spec's author is concerned.
    } else if (def.type === 'pipe' && !isDuration(def)) {
      // A preprocess (transform → schema) is its output's shape; a transform after a schema is its input's.
      core = defOf(def.in!).type === 'transform' ? def.out! : def.in!;
      continue;
    } else return { core, optional, defaultValue };
    core = def.innerType!;
  }
}

/** The leaf's type and bounds, from its input JSON Schema. */
function leafFacts(schema: z.ZodType): { type: string; bounds: string[] } {
  const def = defOf(schema);
  if (isDuration(def)) {
    const positive = !schema.safeParse(0).success;
    return {
      type: 'duration',
      bounds: [`${positive ? '> 0, ' : ''}≤ ${MAX_DURATION_TEXT}`],
    };
  }
  const json = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
  return jsonFacts(json);
}

function jsonFacts(json: Record<string, unknown>): { type: string; bounds: string[] } {
  const bounds: string[] = [];
  if (json.const !== undefined) return { type: `\`${JSON.stringify(json.const)}\``, bounds };
  if (Array.isArray(json.enum)) {
    return { type: 'enum', bounds: [json.enum.map((v) => `\`${String(v)}\``).join(', ')] };
  }
  if (Array.isArray(json.anyOf)) {
    const parts = json.anyOf.map((o) => jsonFacts(o as Record<string, unknown>));
    return { type: parts.map((p) => p.type).join(' or '), bounds: parts.flatMap((p) => p.bounds) };
  }
  const type = Array.isArray(json.type) ? json.type.join(' or ') : typeof json.type === 'string' ? json.type : 'any';
  const num = (key: string, sign: string) => {
    const v = own(json, key);
    if (typeof v === 'number' && Math.abs(v) < Number.MAX_SAFE_INTEGER) bounds.push(`${sign} ${v}`);
  };
  num('exclusiveMinimum', '>');
  num('minimum', '≥');
  num('exclusiveMaximum', '<');
  num('maximum', '≤');
  if (json.minLength === 1) bounds.push('not empty');
  else if (typeof json.minLength === 'number' && json.minLength > 1)
    bounds.push(`at least ${json.minLength} characters`);
  if (typeof json.maxLength === 'number') bounds.push(`at most ${json.maxLength} characters`);
  if (typeof json.pattern === 'string') bounds.push(`pattern ${code(json.pattern)}`);
  if (json.format === 'uri') bounds.push('a URL');
  return { type, bounds };
}

/** What the walk knows about where it is. */
interface Place {
  path: string;
  /** The nearest enclosing field whose default stands in for this field's (when this one has none of its own). */
  inherited?: { from: string; value: unknown };
  /** For an option of a discriminated union: `kind: http`. */
  when?: string;
  /** An object that is one option of a union: the union's row stands for it. */
  option?: boolean;
}

function walk(
  schema: z.ZodType,
  expr: ts.Expression | undefined,
  place: Place,
  ownDoc: string | undefined,
  reader: SourceReader,
  rows: SpecField[],
): void {
  const { core, optional, defaultValue } = unwrap(schema);
  const def = defOf(core);
  const spine = reader.spine(expr);
  // A constant's doc describes a field only when the constant is the field's shape (`monitoring: MonitoringSpec`),
  // not when it is a general type (`timeout: PositiveDuration`).
  const description = ownDoc ?? (structured(core) ? spine.doc : undefined) ?? '';
  const duration = isDuration(def);
  const parentDefault = defaultValue === undefined && place.inherited !== undefined ? place.inherited.value : undefined;
  let shownDefault = '';
  if (defaultValue !== undefined) {
    const parsedEmpty = def.type === 'object' ? core.safeParse({}) : undefined;
    shownDefault =
      parsedEmpty?.success && JSON.stringify(parsedEmpty.data) === JSON.stringify(defaultValue.value)
        ? EACH_FIELD
        : showValue(defaultValue.value, duration);
  } else if (parentDefault !== undefined) {
    shownDefault = showValue(parentDefault, duration);
  }
  const required = optional
    ? 'no'
    : place.inherited && defaultValue === undefined
      ? `in \`${place.inherited.from}\``
      : 'yes';
  const row = (type: string, bounds: string[]) =>
    rows.push({
      path: place.path,
      type: place.when && !place.path.endsWith('.kind') ? `${type} (${place.when})` : type,
      required,
      default: shownDefault,
      defaultFrom: defaultValue === undefined && parentDefault !== undefined ? place.inherited!.from : undefined,
      bounds: [...bounds, ...spine.refines.map((message) => `refused with “${message}”`)],
      description,
    });
  // A default object stands in for the fields below it that have none of their own.
  const childInherited = (key: string): Place['inherited'] => {
    const fromOwn = fieldOf(defaultValue?.value, key);
    if (fromOwn !== undefined) return { from: place.path, value: fromOwn };
    const fromUp = fieldOf(parentDefault, key);
    return fromUp !== undefined ? { from: place.inherited!.from, value: fromUp } : undefined;
  };

  switch (def.type) {
    case 'object': {
      if (place.path !== '' && !place.option) row('object', []);
      for (const [key, child] of Object.entries(def.shape!)) {
        walk(
          child,
          spine.properties?.get(key),
          { path: place.path ? `${place.path}.${key}` : key, inherited: childInherited(key), when: place.when },
          spine.docs.get(key),
          reader,
          rows,
        );
      }
      return;
    }
    case 'array': {
      const element = unwrap(def.element!).core;
      const json = z.toJSONSchema(core, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
      const bounds: string[] = [];
      if (typeof json.minItems === 'number') bounds.push(`at least ${json.minItems} items`);
      if (typeof json.maxItems === 'number') bounds.push(`at most ${json.maxItems} items`);
      if (structured(element)) {
        row('list of objects', bounds);
        walk(def.element!, spine.element, { path: `${place.path}[]`, when: place.when }, undefined, reader, rows);
      } else {
        const item = leafFacts(element);
        row(`list of ${item.type}`, [...bounds, ...item.bounds.map((b) => `each ${b}`)]);
      }
      return;
    }
    case 'record': {
      const key = leafFacts(unwrap(def.keyType!).core);
      const keyBounds = key.bounds.length ? [`keys: ${key.bounds.join(', ')}`] : [];
      const value = unwrap(def.valueType!).core;
      if (structured(value)) {
        row('map', keyBounds);
        walk(def.valueType!, spine.value, { path: `${place.path}.<name>`, when: place.when }, undefined, reader, rows);
      } else {
        const facts = leafFacts(value);
        row(`map of ${facts.type}`, [...keyBounds, ...facts.bounds.map((b) => `each ${b}`)]);
      }
      return;
    }
    case 'union': {
      const options = def.options!;
      if (!options.some((o) => structured(unwrap(o).core))) {
        const facts = leafFacts(core);
        row(facts.type, facts.bounds);
        return;
      }
      const types = options.map((o) => {
        const c = unwrap(o).core;
        const kind = kindOf(c);
        if (kind !== undefined) return `\`${kind}\``;
        const keys = Object.keys(defOf(c).shape ?? {});
        if (keys.length === 1) return `{ ${keys[0]} }`;
        return defOf(c).type === 'object' ? 'object' : leafFacts(c).type;
      });
      row(types.join(' or '), []);
      options.forEach((option, i) => {
        const c = unwrap(option).core;
        if (!structured(c)) return;
        const kind = kindOf(c);
        walk(
          option,
          spine.options?.[i],
          { path: place.path, when: kind !== undefined ? `kind: ${kind}` : place.when, option: true },
          undefined,
          reader,
          rows,
        );
      });
      return;
    }
    default: {
      const facts = leafFacts(core);
      row(facts.type, facts.bounds);
    }
  }
}

/** A default object's value for one of its fields. */
const fieldOf = (value: unknown, key: string): unknown =>
  value !== null && typeof value === 'object' && !Array.isArray(value)
    ? own(value as Record<string, unknown>, key)
    : undefined;

const structured = (schema: z.ZodType): boolean => {
  const type = defOf(schema).type;
  return type === 'object' || type === 'array' || type === 'record' || (type === 'union' && !isLeafUnion(schema));
};

const isLeafUnion = (schema: z.ZodType): boolean =>
  !(defOf(schema).options ?? []).some((o) => structured(unwrap(o).core));

/** The literal `kind` of an object schema (a deployment target's), if it has one. */
function kindOf(schema: z.ZodType): string | undefined {
  const kind = defOf(schema).shape?.kind;
  const values = kind ? defOf(kind).values : undefined;
  return values?.length === 1 ? String(values[0]) : undefined;
}

/** The project root: the nearest folder above this file with a package.json. */
export function projectRoot(from: string = __dirname): string {
  let dir = from;
  for (;;) {
    try {
      readFileSync(join(dir, 'package.json'));
      return dir;
    } catch {
      const up = dirname(dir);
      if (up === dir) throw new Error(`no package.json above ${from}`);
      dir = up;
    }
  }
}

/** Every field of the lifecycle spec, in schema order. */
export function specFields(root: string = projectRoot()): SpecField[] {
  const specFile = join(root, 'src/shared/spec.ts');
  const program = ts.createProgram([specFile], {
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.ESNext,
    moduleResolution: ts.ModuleResolutionKind.Bundler,
    noLib: true,
    types: [],
    skipLibCheck: true,
  });
  const reader = new SourceReader(program);
  const rows: SpecField[] = [];
  walk(LifecycleSpec, reader.exported(specFile, 'LifecycleSpec'), { path: '' }, undefined, reader, rows);
  return rows;
}

const EACH_FIELD = 'each field’s default';

const cell = (text: string): string => text.replace(/\|/g, '\\|').replace(/\n/g, ' ');

/** A code span, with a longer fence when the text holds a backtick. */
const code = (text: string): string => (text.includes('`') ? `\`\` ${text} \`\`` : `\`${text}\``);

function defaultCell(f: SpecField): string {
  if (f.default === '' || f.default === EACH_FIELD) return f.default;
  return f.defaultFrom ? `${code(f.default)} (without ${code(f.defaultFrom)})` : code(f.default);
}

const SECTION_INTRO = `# The lifecycle spec

<!-- Generated by \`npm run docs:spec\` (src/dev/spec-docs.ts) from \`LifecycleSpec\` in src/shared/spec.ts: do not edit
by hand. test/unit/spec-docs.test.ts fails when this file is stale. -->

A lifecycle spec is the YAML (or JSON) file a pipeline submits: \`mlctl run spec.yaml\`, or \`LifecycleClient.start\`
from TypeScript. It is checked against the schema when it is loaded, and every problem is reported with its path
(\`mlctl\` exits 2). A complete example: [examples/churn/specs/good.yaml](../examples/churn/specs/good.yaml).

- **Paths.** \`rollout.analysis.featureSkew.maxPsi\` is a field inside objects; \`rollout.steps[].percent\` a field of
  every item of a list; \`validation.thresholds.<name>.min\` a field under a key you choose (a metric, a feature, a
  gate).
- **Required.** \`yes\`: the field must be given (when its parent is); \`no\`: it may be left out; \`in X\`: required
  when you write \`X\` yourself, while leaving \`X\` out gives the default shown.
- **Durations** are \`90s\`, \`2m\`, \`1.5h\`, \`7d\`, \`250ms\`, or a number of milliseconds, at most \`365d\`; \`> 0\`
  marks those where 0 is refused. Defaults are shown the same way.
- **Refused with** quotes the message of a rule on the field beyond its type and bounds.
- **Relative paths** (\`training.program\`, \`training.dataDir\`) are resolved against the spec file.
- **Names** (model, version, identities, features) follow the patterns in
  [the runbook](runbook.md#names-limits-and-hostile-input).
- A spec is \`.strict()\` at every level: a misspelt field is refused, naming it.

The platform policy (\`config/policy.yaml\`, [runbook](runbook.md#who-may-do-what-the-platform-policy)) may refuse a spec
that loosens it, even when the spec is valid here.
`;

/** docs/spec.md as `npm run docs:spec` writes it (formatted by the project's prettier settings). */
export async function renderSpecDocs(root: string = projectRoot()): Promise<string> {
  const rows = specFields(root);
  const sections = new Map<string, SpecField[]>();
  for (const row of rows) {
    // A top-level field with fields under it is a section of its own; the plain ones share the first.
    const top = row.path.split(/[.[]/)[0]!;
    const section = rows.some((r) => r.path.startsWith(`${top}.`) || r.path.startsWith(`${top}[`)) ? top : '';
    sections.set(section, [...(sections.get(section) ?? []), row]);
  }
  const parts = [SECTION_INTRO];
  for (const [section, fields] of sections) {
    parts.push(`## ${section === '' ? 'Top level' : `\`${section}\``}\n`);
    parts.push('| field | type | required | default | bounds, values | description |');
    parts.push('| --- | --- | --- | --- | --- | --- |');
    for (const f of fields) {
      parts.push(
        `| \`${cell(f.path)}\` | ${cell(f.type)} | ${cell(f.required)} | ${cell(defaultCell(f))} | ${cell(f.bounds.join('; '))} | ${cell(f.description)} |`,
      );
    }
    parts.push('');
  }
  const out = join(root, 'docs/spec.md');
  const options = (await resolveConfig(out)) ?? {};
  return format(parts.join('\n'), { ...options, filepath: out });
}

async function main(): Promise<void> {
  const root = projectRoot();
  const out = join(root, 'docs/spec.md');
  writeFileSync(out, await renderSpecDocs(root));
  console.log(`wrote ${relative(process.cwd(), resolve(out))}`);
}

// Run as a script (tsx or the build), not when a test imports it.
if (/spec-docs\.[jt]s$/.test(process.argv[1] ?? '')) {
  main().catch((err: unknown) => {
    console.error(err instanceof Error ? err.message : String(err));
    process.exit(1);
  });
}
