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

/**
 * `text` cut to at most `maxBytes` of UTF-8. Temporal documents a workflow's static summary as at most 200 bytes (one
 * line in the UI) and its details as at most 20 KB. The dev server accepts more, so nothing local would catch a spec
 * field that makes a start too big for another cluster: text a caller chose is cut to the documented bounds.
 */
export function cutBytes(text: string, maxBytes: number): string {
  if (new TextEncoder().encode(text).length <= maxBytes) return text;
  const room = maxBytes - 3; // the ellipsis takes 3 bytes
  let used = 0;
  let end = 0;
  // By code point, so a surrogate pair is kept or dropped whole.
  for (const ch of text) {
    const cp = ch.codePointAt(0)!;
    const size = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    if (used + size > room) break;
    used += size;
    end += ch.length;
  }
  return cut(text, end + 1);
}

/** Temporal's bounds on a workflow's static summary and details, in UTF-8 bytes. */
export const STATIC_SUMMARY_MAX_BYTES = 200;
export const STATIC_DETAILS_MAX_BYTES = 20_000;
