// The inbox: signs in, then wires the conversation list, the open thread, the live feed and the
// status banner together. Untrusted text only ever reaches the page through dom.js.

import { ApiError, call, get, onSignedOut, post } from "./api.js";
import { $, platformName } from "./dom.js";
import { Feed } from "./feed.js";
import { ConversationList } from "./list.js";
import { Thread } from "./thread.js";

const CHANNELS_EVERY_MS = 30_000;
const SEARCH_DELAY_MS = 250;

const state = {
  channels: {}, // platform -> { platform, ready, reason, token_expires_in_secs, max_text_chars }
  store: { ready: true, reason: null },
  signedIn: false,
  channelsTimer: null,
  expiryTimer: null,
};

const list = new ConversationList({ onOpen: (conversation, options) => openConversation(conversation, options) });
const thread = new Thread({ channels: () => state.channels, markRead });
const feed = new Feed({
  onEvent: applyEvent,
  onState: (connection) => showConnection(connection),
  onGap: () => reloadEverything(),
  beforeReconnect: async () => {
    try {
      await get("/api/session", { quiet401: true });
      return true;
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) {
        signedOut("Your session has ended. Sign in again to go on.");
        return false;
      }
      return true;
    }
  },
});

onSignedOut(() => signedOut("Your session has ended. Sign in again to go on."));

// ---------------------------------------------------------------------------------------------
// Signing in and out

async function start() {
  // The session check and the live feed at once: a signed-in operator waits for one round trip
  // before the list is asked for, not two. Signed out, the stream is refused and closed.
  const opening = feed.start();
  const firstPage = list.prefetch();
  let session = null;
  try {
    session = (await get("/api/session", { quiet401: true }))?.session;
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 401)) $("signin-note").textContent = error.message;
  }
  performance.mark("parley:session");
  if (session) await enter(session, opening, firstPage);
  else {
    feed.stop();
    showSignIn("");
  }
}

function showSignIn(note) {
  state.signedIn = false;
  $("inbox").hidden = true;
  $("signin").hidden = false;
  $("signin-note").textContent = note;
  $("token").value = "";
  $("token").focus();
  document.documentElement.dataset.ready = "signin";
}

$("signin-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const error = $("signin-error");
  const button = $("signin-button");
  error.textContent = "";
  button.disabled = true;
  try {
    const answer = await call("POST", "/api/session", { token: $("token").value }, { quiet401: true });
    $("token").value = "";
    await enter(answer?.session);
  } catch (failure) {
    if (failure instanceof ApiError && failure.code === "wrong_token") error.textContent = "Wrong token. Check it and try again.";
    else if (failure instanceof ApiError && failure.status === 429) {
      const wait = failure.retryAfter ? ` Try again in ${failure.retryAfter} s.` : " Try again later.";
      error.textContent = `Too many wrong tokens.${wait}`;
    } else error.textContent = failure.message || "Signing in failed.";
    $("token").select();
  } finally {
    button.disabled = false;
  }
});

$("signout").addEventListener("click", async () => {
  try {
    await call("DELETE", "/api/session", undefined, { quiet401: true });
  } catch {
    // Signed out either way: the page forgets everything below.
  }
  leave();
  showSignIn("You are signed out.");
});

/** Shows the inbox: the live feed first (so nothing that happens while the list loads is lost), then the list. */
async function enter(session, opening = null, firstPage = null) {
  state.signedIn = true;
  $("signin").hidden = true;
  $("signin-error").textContent = "";
  $("inbox").hidden = false;
  document.documentElement.dataset.ready = "loading";
  watchExpiry(session?.expires_at);
  // The banner and the composer's limits follow when the channels answer; the list does not wait.
  loadChannels();
  if (firstPage) {
    // Asked for at start, alongside the feed: shown at once, then made good against the feed
    // (asked again once the feed is open; events held until then).
    await list.reload(firstPage, { holdUntilRefreshed: true });
    performance.mark("parley:list");
    opening.then(() => {
      performance.mark("parley:feed");
      return list.refreshFirstPage();
    });
  } else {
    await (opening ?? feed.start());
    performance.mark("parley:feed");
    await list.reload();
    performance.mark("parley:list");
  }
  if (!state.signedIn) return;
  document.documentElement.dataset.ready = "list";
  document.documentElement.dataset.readyMs = performance.now().toFixed(1);
  clearInterval(state.channelsTimer);
  state.channelsTimer = setInterval(loadChannels, CHANNELS_EVERY_MS);
  if (!thread.openId && !isPhone()) list.focus();
}

/** The session expires on its own: sign in again then (a 401 would say so too, later). */
function watchExpiry(expiresAt) {
  clearTimeout(state.expiryTimer);
  const left = Date.parse(expiresAt) - Date.now();
  if (Number.isFinite(left) && left > 0 && left < 2 ** 31) {
    state.expiryTimer = setTimeout(() => signedOut("Your session has expired. Sign in again to go on."), left + 1000);
  }
}

function leave() {
  state.signedIn = false;
  feed.stop();
  feed.lastSeq = null; // the next session starts live, and loads what it shows
  clearInterval(state.channelsTimer);
  clearTimeout(state.expiryTimer);
  thread.close();
  list.selectedId = null;
  list.generation += 1;
  list.entries.clear();
  $("conversations").replaceChildren();
  showConnection("live");
  document.body.dataset.view = "list";
}

function signedOut(note) {
  if (!state.signedIn) return;
  leave();
  showSignIn(note);
}

// ---------------------------------------------------------------------------------------------
// Conversations, the thread and the feed

function openConversation(conversation, { focus } = {}) {
  document.body.dataset.view = "thread";
  thread.open(conversation, { focus: focus || isPhone() });
}

function markRead(id) {
  list.markedRead(id);
  post(`/api/conversations/${encodeURIComponent(id)}/read`, {}).catch(() => {
    // Not fatal: the unread count stays until the next time.
  });
}

function applyEvent(event) {
  const data = event.data || {};
  switch (event.type) {
    case "message.received":
    case "message.created":
    case "message.status":
    case "message.updated": {
      const message = data.message;
      if (!message) return;
      const fresh = thread.upsert(message);
      if (fresh && message.direction === "inbound" && document.visibilityState === "visible") markRead(message.conversation_id);
      return;
    }
    case "conversation.updated": {
      const conversation = data.conversation;
      if (!conversation) return;
      list.upsert(conversation);
      thread.updateConversation(conversation);
      return;
    }
    case "conversation.merged": {
      const conversation = data.conversation;
      if (data.from) list.remove(data.from);
      if (conversation) list.upsert(conversation);
      if (conversation && thread.openId === data.from) {
        list.select(conversation.id);
        thread.open(conversation);
      } else if (conversation) thread.updateConversation(conversation);
      return;
    }
    case "channel.status":
      loadChannels();
      return;
    case "feed.reset":
      reloadEverything();
      return;
    default:
  }
}

/** After events may have been missed: the list, the open thread and the banner again. */
async function reloadEverything() {
  loadChannels();
  await list.reload();
  const open = thread.openId;
  if (!open) return;
  try {
    const conversation = await get(`/api/conversations/${encodeURIComponent(open)}`);
    if (thread.openId === open) thread.open(conversation?.conversation ?? conversation);
  } catch {
    // Gone (merged or removed): leave it as it is shown.
  }
}

document.addEventListener("visibilitychange", () => {
  if (document.visibilityState !== "visible" || !thread.openId) return;
  const shown = list.get(thread.openId);
  if (shown && shown.unread > 0) markRead(thread.openId);
});

// ---------------------------------------------------------------------------------------------
// Filters, phone layout, keyboard

let searchTimer = null;
$("search").addEventListener("input", () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(() => list.setFilters({ q: $("search").value.trim() }), SEARCH_DELAY_MS);
});
$("filters").addEventListener("submit", (event) => {
  event.preventDefault();
  clearTimeout(searchTimer);
  list.setFilters({ q: $("search").value.trim() });
});
$("platform-filter").addEventListener("change", () => list.setFilters({ platform: $("platform-filter").value }));
$("unread-filter").addEventListener("change", () => list.setFilters({ unread: $("unread-filter").checked }));

$("back").addEventListener("click", () => {
  document.body.dataset.view = "list";
  list.focus();
});
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && document.body.dataset.view === "thread" && isPhone()) {
    document.body.dataset.view = "list";
    list.focus();
  }
});

function isPhone() {
  return window.matchMedia("(max-width: 700px)").matches;
}

// ---------------------------------------------------------------------------------------------
// Channels and the banner

async function loadChannels() {
  if (!state.signedIn) return;
  let answer;
  try {
    answer = await get("/api/channels");
  } catch (error) {
    if (error instanceof ApiError && error.status !== 401 && error.status !== 0) showBanner([`Channel status unknown: ${error.message}`]);
    return;
  }
  state.channels = {};
  for (const channel of answer?.channels || []) state.channels[channel.platform] = channel;
  state.store = answer?.store || { ready: true, reason: null };
  thread.updateCounter();
  const problems = [];
  if (!state.store.ready) problems.push(`The store is not writable${state.store.reason ? `: ${state.store.reason}` : ""}. Replies cannot be saved.`);
  for (const channel of Object.values(state.channels)) {
    const name = platformName(channel.platform);
    if (!channel.ready) problems.push(`${name} is not ready${channel.reason ? `: ${channel.reason}` : "."}`);
    else if (Number.isFinite(channel.token_expires_in_secs) && channel.token_expires_in_secs < 7 * 86_400) {
      const days = Math.max(0, Math.floor(channel.token_expires_in_secs / 86_400));
      problems.push(`${name}'s access token expires in ${days === 0 ? "less than a day" : `${days} day${days === 1 ? "" : "s"}`}.`);
    }
  }
  showBanner(problems);
}

function showBanner(problems) {
  const banner = $("banner");
  const text = problems.join(" ");
  if (banner.textContent !== text) banner.textContent = text;
  banner.hidden = problems.length === 0;
}

function showConnection(connection) {
  const element = $("connection");
  const text = connection === "live" ? "" : "reconnecting…";
  if (element.textContent !== text) element.textContent = text;
  element.dataset.state = connection;
}

start();
