// The Add and Edit key forms. No inline script: the CSP forbids it.

// Changing the Allowed IPs rows after a failed Save answers their group again, unjudged: the
// error summary drops its lines about fields that no longer show an error, and goes (with the
// "Error:" of the title) once it has none left.
document.addEventListener("htmx:afterSettle", () => {
  const summary = document.querySelector("[data-error-summary]");
  if (!summary) return;
  for (const item of summary.querySelectorAll("li[data-field]")) {
    const link = item.querySelector("a[href^='#']");
    const field = link && document.getElementById(link.hash.slice(1));
    if (!field || !field.closest(".has-error")) item.remove();
  }
  const left = summary.querySelectorAll("li").length;
  if (!left) {
    summary.remove();
    document.title = document.title.replace(/^Error: /, "");
  } else if (left === 1) {
    summary.querySelector("h2").textContent = "There is a problem with what you entered";
  }
});

// Expiry presets need this script, so they stay hidden without it.
for (const group of document.querySelectorAll("[data-presets]")) group.hidden = false;

document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-presets] [data-date]");
  if (!button) return;
  const input = document.getElementById(button.dataset.for);
  input.value = button.dataset.date;
  input.dispatchEvent(new Event("change", { bubbles: true }));
  const status = button.parentElement.querySelector("[data-preset-status]");
  if (status) status.textContent = `Expiration date set to ${button.dataset.words}.`;
});
