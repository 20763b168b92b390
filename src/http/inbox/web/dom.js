// Building DOM from untrusted data. Everything a contact or a platform wrote goes into the page
// through textContent or attribute setters here, never as HTML.

/** An element with attributes (set one by one, never parsed) and children (strings become text). */
export function h(tag, attributes, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") element.className = value;
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    element.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return element;
}

export const $ = (id) => document.getElementById(id);

/** The four platforms: their names and a short mark for the list. */
export const PLATFORMS = {
  facebook: { name: "Messenger", mark: "M" },
  whatsapp: { name: "WhatsApp", mark: "W" },
  viber: { name: "Viber", mark: "V" },
  linkedin: { name: "LinkedIn", mark: "in" },
};

export function platformName(platform) {
  return PLATFORMS[platform]?.name ?? String(platform);
}

export function platformMark(platform) {
  const known = PLATFORMS[platform];
  return h("span", { class: `mark mark-${known ? platform : "other"}`, role: "img", "aria-label": platformName(platform), title: platformName(platform) }, known?.mark ?? "?");
}

/** A URL that may become a link or an image source: http(s) only, parsed, else null. */
export function safeUrl(text) {
  if (typeof text !== "string") return null;
  try {
    const url = new URL(text, location.href);
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  } catch {
    return null;
  }
}

/** A link that opens in a new tab and tells the other site nothing about us. */
export function link(href, label) {
  return h("a", { href, target: "_blank", rel: "noopener noreferrer" }, label);
}

const URL_IN_TEXT = /\bhttps?:\/\/[^\s<>"']+/gi;
const TRAILING_PUNCTUATION = /[.,;:!?)\]}'"]+$/;

/** Text with its http(s) URLs as links; everything else stays text. */
export function linkified(text) {
  const fragment = document.createDocumentFragment();
  let rest = 0;
  for (const match of text.matchAll(URL_IN_TEXT)) {
    let found = match[0];
    const trailing = found.match(TRAILING_PUNCTUATION);
    if (trailing) found = found.slice(0, -trailing[0].length);
    const href = safeUrl(found);
    if (!href) continue;
    fragment.append(text.slice(rest, match.index), link(href, found));
    rest = match.index + found.length;
  }
  fragment.append(text.slice(rest));
  return fragment;
}

/** Unicode code points, as the platforms count their limits. */
export function codePoints(text) {
  let n = 0;
  for (const _ of text) n += 1;
  return n;
}

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const timeOfDay = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const weekday = new Intl.DateTimeFormat(undefined, { weekday: "short" });
const dayMonth = new Intl.DateTimeFormat(undefined, { day: "numeric", month: "short" });
const fullDate = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

/** "now", "5 min", "3 h", "Mon", "12 Mar": how long ago, short enough for the list. */
export function relativeTime(iso, now = Date.now()) {
  const at = Date.parse(iso);
  if (Number.isNaN(at)) return "";
  const ago = now - at;
  if (ago < MINUTE) return "now";
  if (ago < HOUR) return `${Math.floor(ago / MINUTE)} min`;
  if (ago < DAY) return `${Math.floor(ago / HOUR)} h`;
  if (ago < 6 * DAY) return weekday.format(at);
  return dayMonth.format(at);
}

export function clockTime(iso) {
  const at = Date.parse(iso);
  return Number.isNaN(at) ? "" : timeOfDay.format(at);
}

export function longTime(iso) {
  const at = Date.parse(iso);
  return Number.isNaN(at) ? "" : fullDate.format(at);
}

/** A <time> element showing `text`, with the full date on hover and for screen readers. */
export function timeElement(iso, text, className) {
  return h("time", { class: className, datetime: iso, title: longTime(iso) }, text);
}
