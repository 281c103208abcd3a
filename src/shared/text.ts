/**
 * Caller text quoted in messages, logs and alerts, cut to a bound. The cut is a fresh string: a slice of a large
 * string keeps the whole of it alive in V8, and a message about a 1 MB value should not hold the megabyte.
 */

/** `text` cut to at most `max` UTF-16 units, an ellipsis last, never splitting a surrogate pair. */
export function cut(text: string, max: number): string {
  if (text.length <= max) return text;
  const last = text.charCodeAt(max - 2);
  const end = last >= 0xd800 && last <= 0xdbff ? max - 2 : max - 1;
  return `${text.slice(0, end).split('').join('')}…`;
}

/** `text` cut to `max` and followed by its length when it was longer: `abc… (3000000 chars)`. */
export function clipped(text: string, max: number): string {
  return text.length > max ? `${cut(text, max)} (${text.length} chars)` : text;
}
