/**
 * A strict reader of the Prometheus text exposition format (0.0.4) for tests: every sample line with its labels, and
 * each family's TYPE. A malformed line throws, so a scrape that parses is a scrape Prometheus would take. (The npm
 * parsers on offer merge labelled histograms into one series.)
 */

export interface PromSample {
  /** The sample's own name: `x_bucket`, `x_sum`, `x_count` for a histogram `x`. */
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface PromFamily {
  name: string;
  type: string;
  help: string;
  samples: PromSample[];
}

export interface PromPage {
  families: Map<string, PromFamily>;
  samples: PromSample[];
  /** Every sample name, and the name of every family declared (with or without samples). */
  names: Set<string>;
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*/;
const SUFFIXES: Record<string, string[]> = {
  histogram: ['_bucket', '_sum', '_count'],
  summary: ['_sum', '_count'],
  counter: ['_total'],
};

function parseValue(raw: string, line: string): number {
  if (raw === '+Inf' || raw === 'Inf') return Infinity;
  if (raw === '-Inf') return -Infinity;
  if (raw === 'NaN') return NaN;
  const n = Number(raw);
  if (raw === '' || Number.isNaN(n)) throw new Error(`bad sample value "${raw}" in: ${line}`);
  return n;
}

function parseSample(line: string): PromSample {
  const name = NAME.exec(line)?.[0];
  if (!name) throw new Error(`bad metric name in: ${line}`);
  let rest = line.slice(name.length);
  const labels: Record<string, string> = {};
  if (rest.startsWith('{')) {
    rest = rest.slice(1);
    for (;;) {
      rest = rest.trimStart();
      if (rest.startsWith('}')) break;
      const label = LABEL.exec(rest)?.[0];
      if (!label || !rest.slice(label.length).startsWith('="')) throw new Error(`bad label in: ${line}`);
      rest = rest.slice(label.length + 2);
      let value = '';
      let i = 0;
      for (; i < rest.length && rest[i] !== '"'; i++) {
        if (rest[i] === '\\') {
          const next = rest[++i];
          value += next === 'n' ? '\n' : next === '\\' ? '\\' : next === '"' ? '"' : `\\${next}`;
        } else value += rest[i];
      }
      if (i >= rest.length) throw new Error(`unterminated label value in: ${line}`);
      if (label in labels) throw new Error(`duplicate label ${label} in: ${line}`);
      labels[label] = value;
      rest = rest.slice(i + 1).trimStart();
      if (rest.startsWith(',')) rest = rest.slice(1);
      else if (!rest.startsWith('}')) throw new Error(`expected , or } in: ${line}`);
    }
    rest = rest.slice(1);
  }
  const fields = rest.trim().split(/\s+/);
  if (!/^\s/.test(rest) || fields.length < 1 || fields.length > 2) throw new Error(`bad sample line: ${line}`);
  if (fields[1] !== undefined && !/^-?\d+$/.test(fields[1])) throw new Error(`bad timestamp in: ${line}`);
  return { name, labels, value: parseValue(fields[0]!, line) };
}

export function parsePrometheusText(text: string): PromPage {
  const families = new Map<string, PromFamily>();
  const samples: PromSample[] = [];
  const family = (name: string) => {
    let f = families.get(name);
    if (!f) families.set(name, (f = { name, type: 'untyped', help: '', samples: [] }));
    return f;
  };
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '') continue;
    const meta = /^#\s*(HELP|TYPE)\s+(\S+)\s*(.*)$/.exec(line);
    if (meta) {
      const f = family(meta[2]!);
      if (meta[1] === 'TYPE') {
        if (!['counter', 'gauge', 'histogram', 'summary', 'untyped'].includes(meta[3]!)) {
          throw new Error(`bad TYPE in: ${line}`);
        }
        f.type = meta[3]!;
      } else f.help = meta[3]!;
      continue;
    }
    if (line.startsWith('#')) continue;
    const sample = parseSample(line);
    samples.push(sample);
    // A sample belongs to the family declared under its name, or under its name less a suffix of that family's type.
    const owner =
      families.get(sample.name) ??
      [...families.values()].find((f) => (SUFFIXES[f.type] ?? []).some((suffix) => sample.name === f.name + suffix)) ??
      family(sample.name);
    owner.samples.push(sample);
  }
  const names = new Set([...families.keys(), ...samples.map((s) => s.name)]);
  return { families, samples, names };
}

/** Samples named `name` whose labels include `labels`. */
export function samplesOf(page: PromPage, name: string, labels: Record<string, string> = {}): PromSample[] {
  return page.samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
}
