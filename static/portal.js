// Copy buttons on the one-time credentials page. No inline script: the CSP forbids it.
document.addEventListener("click", async (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  const field = document.getElementById(button.dataset.copy);
  if (!field) return;
  field.select();
  try {
    await navigator.clipboard.writeText(field.value);
  } catch {
    document.execCommand("copy"); // older browsers, or no clipboard permission
  }
  const label = button.textContent;
  button.textContent = "Copied";
  setTimeout(() => { button.textContent = label; }, 1500);
});

// New Allowed IP rows get the focus, so one can type right after clicking Add.
document.addEventListener("htmx:afterSwap", (event) => {
  if (event.detail.target.id === "ip-rows") {
    const inputs = event.detail.target.querySelectorAll("input");
    if (inputs.length) inputs[inputs.length - 1].focus();
  }
});
