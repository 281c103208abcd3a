/**
 * Reading plain objects by names that callers choose. `record[name]` on an object with a prototype answers
 * inherited members for `toString`, `constructor` or `__proto__`; these helpers answer own properties only.
 * (Writes by such names go to a `Map`; JSON is then built with `Object.fromEntries`, which defines own properties.)
 */

/** The own value of `key` in `record`, never an inherited member; undefined when absent. */
export function own<T>(record: Readonly<Record<string, T>> | undefined | null, key: string): T | undefined {
  return record != null && Object.hasOwn(record, key) ? record[key] : undefined;
}

/** Whether `record` has `key` as an own property (what `key in record` means for a map). */
export function hasOwn(record: object | undefined | null, key: string): boolean {
  return record != null && Object.hasOwn(record, key);
}

/** A `Map` of a plain object's own entries. */
export function mapOf<T>(record: Readonly<Record<string, T>> | undefined | null): Map<string, T> {
  return new Map(record ? Object.entries(record) : []);
}
