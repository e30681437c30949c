// Small behaviours of every page. No inline script: the CSP forbids it.

// Copy buttons (the one-time credentials page): the focus stays on the button, and the result
// is announced in the page's live region.
document.addEventListener("click", async (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  const field = document.getElementById(button.dataset.copy);
  if (!field) return;
  let copied = true;
  try {
    await navigator.clipboard.writeText(field.value);
  } catch {
    field.select(); // older browsers, or no clipboard permission
    copied = document.execCommand("copy");
    button.focus();
  }
  const what = button.dataset.copyName || "Value";
  const status = document.getElementById("copy-status");
  if (status) status.textContent = copied ? `${what} copied.` : `${what} could not be copied.`;
  const label = button.textContent;
  button.textContent = copied ? "Copied" : "Not copied";
  setTimeout(() => { button.textContent = label; }, 1500);
});

// After a failed submit the error summary takes the focus, so it is what a screen reader reads.
const summary = document.querySelector("[data-error-summary]");
summary?.focus();

// A message of the step before a redirect ("The key was saved."): a live region announces
// what changes in it, not what a page loads with, so the message is put back into it a moment
// after the load; the page's heading takes the focus, where reading goes on from.
const said = document.querySelector(".messages[role=status]");
if (said && said.children.length && !summary) {
  const messages = [...said.children];
  said.replaceChildren();
  const heading = document.querySelector("main h1");
  if (heading) {
    heading.tabIndex = -1;
    heading.focus();
  }
  setTimeout(() => said.replaceChildren(...messages), 150);
}

// A link in the summary moves the focus into its field, not only the scroll position.
document.addEventListener("click", (event) => {
  const link = event.target.closest("[data-error-summary] a[href^='#']");
  const field = link && document.getElementById(link.hash.slice(1));
  if (!field) return;
  event.preventDefault();
  const group = field.closest("fieldset, .field");
  (group || field).scrollIntoView({ block: "start" });
  field.focus({ preventScroll: true });
});

// The user menu closes with Escape (focus back on its button), a click elsewhere, or when the
// focus leaves it, so it never hides the page's own controls.
const menu = document.querySelector(".usermenu");
if (menu) {
  const close = () => { menu.open = false; };
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && menu.open) {
      close();
      menu.querySelector("summary").focus();
    }
  });
  document.addEventListener("click", (event) => {
    if (menu.open && !menu.contains(event.target)) close();
  });
  menu.addEventListener("focusout", (event) => {
    if (event.relatedTarget && !menu.contains(event.relatedTarget)) close();
  });
}

// A warning before the idle log-out (SESSION_IDLE_SECONDS) that says when, with a way to stay
// signed in: any request renews the session, so "Stay signed in" asks for the profile page in
// the background. Requests made through htmx count as activity, and so does typing (renewing
// the session at most every minute, or every quarter of the idle time if shorter). At the end
// the page goes to the log-in page, which says why and comes back here (`next`).
const idle = Number(document.body.dataset.idleSeconds || 0);
const warning = document.getElementById("idle-warning");
if (idle > 0 && warning) {
  const lead = Math.min(120, idle / 2) * 1000;
  const when = document.getElementById("idle-warning-when");
  const stay = document.getElementById("stay-signed-in");
  const renewEvery = Math.min(60, idle / 4) * 1000;
  let warnTimer, endTimer, countdown, endsAt, renewedAt = Date.now();
  const inWords = (ms) => {
    const seconds = Math.max(0, Math.round(ms / 1000));
    if (seconds >= 90) return `in ${Math.round(seconds / 60)} minutes`;
    if (seconds >= 60) return "in 1 minute";
    return `in ${seconds} second${seconds === 1 ? "" : "s"}`;
  };
  const timedOut = () => {
    const back = window.location.pathname + window.location.search;
    const query = new URLSearchParams({ next: back, ended: "idle" });
    window.location.assign(`${document.body.dataset.loginUrl}?${query}`);
  };
  const arm = () => {
    clearTimeout(warnTimer);
    clearTimeout(endTimer);
    clearInterval(countdown);
    warning.hidden = true;
    endsAt = Date.now() + idle * 1000;
    warnTimer = setTimeout(() => {
      when.textContent = inWords(endsAt - Date.now());
      warning.hidden = false;
      stay.focus();
      countdown = setInterval(() => { when.textContent = inWords(endsAt - Date.now()); }, 1000);
    }, idle * 1000 - lead);
    endTimer = setTimeout(timedOut, idle * 1000 + 1000);
  };
  const renew = async () => {
    renewedAt = Date.now();
    const response = await fetch(document.body.dataset.stayUrl, { credentials: "same-origin" });
    if (response.redirected) timedOut(); // ended already (another tab logged out)
    else arm();
  };
  stay.addEventListener("click", renew);
  document.addEventListener("keydown", (event) => {
    if (event.target === stay) return; // its click renews
    if (Date.now() - renewedAt >= renewEvery) renew();
  });
  document.addEventListener("htmx:afterRequest", () => {
    renewedAt = Date.now();
    arm();
  });
  arm();
}
