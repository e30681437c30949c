// The Add and Edit key forms. No inline script: the CSP forbids it.

// After a failed Save the error summary takes the focus, so it is what a screen reader reads.
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
