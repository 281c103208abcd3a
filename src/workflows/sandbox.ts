/**
 * Hardens the workflow sandbox the worker shares between workflows (`reuseV8Context`): the SDK freezes the sandbox's
 * globals but not the prototypes of its built-ins, so one `obj["__proto__"].x = …` with a caller-chosen key would add
 * `x` to every object of every workflow on the worker, and strict schemas would then refuse every input. Maps keep
 * caller-chosen keys away from prototypes; this makes sure a slip cannot spread: the built-in prototypes take no new
 * properties (existing ones stay writable, so libraries that assign `toString` on their own classes still work). A
 * write that would have polluted throws a TypeError in the one workflow that made it.
 */
const PROTOTYPES: readonly object[] = [
  Object.prototype,
  Array.prototype,
  Function.prototype,
  String.prototype,
  Number.prototype,
  Boolean.prototype,
  Map.prototype,
  Set.prototype,
  Promise.prototype,
  Error.prototype,
  Date.prototype,
  RegExp.prototype,
];

for (const prototype of PROTOTYPES) Object.preventExtensions(prototype);

/** Whether the sandbox's built-in prototypes refuse new properties (for tests and diagnostics). */
export function sandboxSealed(): boolean {
  return PROTOTYPES.every((p) => !Object.isExtensible(p));
}
