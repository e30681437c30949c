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
document.querySelector("[data-error-summary]")?.focus();

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

// A warning before the idle log-out (SESSION_IDLE_SECONDS), with a way to stay signed in:
// any request renews the session, so "Stay signed in" asks for the profile page in the
// background. Requests made through htmx count as activity too.
const idle = Number(document.body.dataset.idleSeconds || 0);
const warning = document.getElementById("idle-warning");
if (idle > 0 && warning) {
  const lead = Math.min(120, idle / 2) * 1000;
  let warnTimer, endTimer;
  const arm = () => {
    clearTimeout(warnTimer);
    clearTimeout(endTimer);
    warning.hidden = true;
    warnTimer = setTimeout(() => {
      warning.hidden = false;
      document.getElementById("stay-signed-in").focus();
    }, idle * 1000 - lead);
    endTimer = setTimeout(() => window.location.reload(), idle * 1000 + 1000);
  };
  document.getElementById("stay-signed-in").addEventListener("click", async () => {
    await fetch(document.body.dataset.stayUrl, { credentials: "same-origin" });
    arm();
  });
  document.addEventListener("htmx:afterRequest", arm);
  arm();
}
