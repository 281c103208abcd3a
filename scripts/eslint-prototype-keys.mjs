/**
 * ESLint rule `local/no-prototype-keys`: a plain object indexed by a caller-chosen string reaches `Object.prototype`
 * (`counts["__proto__"].x = 1` pollutes every object of the realm; `"constructor" in counts` is true; `counts.toString`
 * is a function). Every map keyed by names that come from users (holders, resources, features, categories, incident
 * keys) is a `Map`, and JSON is built from it with `Object.fromEntries` (which defines own properties).
 *
 * With type information, the rule reports on objects whose type has a string index signature (`Record<string, T>`,
 * `{ [k: string]: T }`), indexed by an expression of type `string` (not a literal):
 * - a write: `obj[key] = v`, `obj[key] ??= v`, `obj[key] += v`, `obj[key]++`, `delete obj[key]`;
 * - `key in obj`;
 * - a read, `obj[key]`, unless it is the object of `Object.hasOwn(obj, key) ? obj[key] : …` (use `own(obj, key)`
 *   from src/shared/own.ts).
 * Arrays, typed arrays and objects keyed by literal unions are not affected.
 */
import { ESLintUtils } from '@typescript-eslint/utils';
import ts from 'typescript';

const WRITE = 'write';
const IN = 'in';
const READ = 'read';

function isStringKey(checker, type) {
  if (type.isUnion()) return type.types.some((t) => isStringKey(checker, t));
  const f = type.getFlags();
  return (f & ts.TypeFlags.String) !== 0 || (f & ts.TypeFlags.TemplateLiteral) !== 0;
}

function hasStringIndex(checker, type) {
  if (type.isUnion()) return type.types.some((t) => hasStringIndex(checker, t));
  if (checker.isArrayType(type) || checker.isTupleType(type)) return false;
  const f = type.getFlags();
  if (f & (ts.TypeFlags.Any | ts.TypeFlags.Unknown)) return false;
  return checker.getIndexInfoOfType(type, ts.IndexKind.String) !== undefined;
}

/** `Object.hasOwn(obj, key) ? obj[key] : …` or `Object.hasOwn(obj, key) && obj[key]`: guarded by an own-key test. */
function guardedByHasOwn(node, sourceCode) {
  const objText = sourceCode.getText(node.object);
  const keyText = sourceCode.getText(node.property);
  const testsOwnKey = (test) =>
    test.type === 'LogicalExpression' && test.operator === '&&'
      ? testsOwnKey(test.left) || testsOwnKey(test.right)
      : test.type === 'CallExpression' &&
        sourceCode.getText(test.callee) === 'Object.hasOwn' &&
        test.arguments.length === 2 &&
        sourceCode.getText(test.arguments[0]) === objText &&
        sourceCode.getText(test.arguments[1]) === keyText;
  for (let p = node.parent; p; p = p.parent) {
    const test =
      p.type === 'ConditionalExpression' || p.type === 'IfStatement'
        ? p.test
        : p.type === 'LogicalExpression' && p.operator === '&&'
          ? p.left
          : null;
    if (test && testsOwnKey(test)) return true;
    if (p.type.endsWith('Function') || p.type === 'FunctionDeclaration') return false;
  }
  return false;
}

export const noPrototypeKeys = ESLintUtils.RuleCreator.withoutDocs({
  meta: {
    type: 'problem',
    messages: {
      [WRITE]:
        'A plain object written by a caller-chosen string key can reach Object.prototype ("__proto__", "constructor"): use a Map (and Object.fromEntries for JSON).',
      [IN]: '`key in obj` is true for "constructor", "toString", …: use a Map, or Object.hasOwn(obj, key).',
      [READ]:
        'A plain object read by a caller-chosen string key returns inherited members ("toString", "constructor"): use a Map, or own(obj, key) from src/shared/own.ts.',
    },
    schema: [],
  },
  defaultOptions: [],
  create(context) {
    const services = ESLintUtils.getParserServices(context);
    const checker = services.program.getTypeChecker();
    const sourceCode = context.sourceCode;
    const typeOf = (node) => checker.getTypeAtLocation(services.esTreeNodeToTSNodeMap.get(node));
    const risky = (member) =>
      member.computed &&
      member.property.type !== 'Literal' &&
      isStringKey(checker, typeOf(member.property)) &&
      hasStringIndex(checker, typeOf(member.object));
    return {
      MemberExpression(node) {
        if (!risky(node)) return;
        const parent = node.parent;
        const written =
          (parent.type === 'AssignmentExpression' && parent.left === node) ||
          parent.type === 'UpdateExpression' ||
          (parent.type === 'UnaryExpression' && parent.operator === 'delete');
        if (written) context.report({ node, messageId: WRITE });
        else if (!guardedByHasOwn(node, sourceCode)) context.report({ node, messageId: READ });
      },
      BinaryExpression(node) {
        if (node.operator !== 'in' || node.left.type === 'PrivateIdentifier') return;
        if (isStringKey(checker, typeOf(node.left)) && hasStringIndex(checker, typeOf(node.right)))
          context.report({ node, messageId: IN });
      },
    };
  },
});

export default { rules: { 'no-prototype-keys': noPrototypeKeys } };
