// Live refresh without a build step: re-fetch this page and swap <main>, every N seconds.
(function () {
  const KEY = "queuectl-refresh";
  let timer = null;
  let paused = localStorage.getItem(KEY + "-paused") === "1";
  const select = () => document.getElementById("refresh-interval");
  const button = () => document.getElementById("refresh-toggle");

  async function refresh() {
    if (document.activeElement && document.activeElement.tagName === "INPUT") return;
    // a swap would untick the boxes being ticked, and a confirmation page is a POST's answer
    if (document.querySelector("input[data-pick]:checked, #confirm-form")) return;
    const response = await fetch(location.href, {headers: {"X-Live-Refresh": "1"}});
    if (!response.ok) return;
    const html = new DOMParser().parseFromString(await response.text(), "text/html");
    const next = html.getElementById("content");
    if (next) document.getElementById("content").innerHTML = next.innerHTML;
  }

  function schedule() {
    clearInterval(timer);
    button().textContent = paused ? "Resume" : "Pause";
    if (!paused) timer = setInterval(refresh, Number(select().value) * 1000);
  }

  // Listeners on the document, not on the forms: a refresh replaces every form in <main>.
  // A form (or the button that sends it) with data-confirm asks first; "{n}" in the
  // question is the number of boxes ticked for the form. OK turns the form's confirm=ask
  // into confirm=yes, so the server acts instead of answering with its own question page
  // (what a browser without JavaScript gets).
  document.addEventListener("submit", function (event) {
    const form = event.target;
    const by = event.submitter;
    const question = (by && by.dataset.confirm) || form.dataset.confirm;
    if (!question) return;
    const ticked = form.id
      ? document.querySelectorAll('input[type=checkbox][form="' + form.id + '"]:checked').length
      : 0;
    const n = ticked + form.querySelectorAll("input[type=checkbox][data-pick]:checked").length;
    if (question.includes("{n}") && n === 0) {
      event.preventDefault();
      window.alert("Select one or more jobs first.");
      return;
    }
    if (!window.confirm(question.replace("{n}", String(n)))) {
      event.preventDefault();
      return;
    }
    const field = form.querySelector('input[name="confirm"]');
    if (field) field.value = "yes";
  });

  // a select-all box (data-select-all="NAME") ticks every box of its group (data-pick="NAME")
  document.addEventListener("change", function (event) {
    const all = event.target;
    if (!(all instanceof HTMLInputElement) || !all.dataset.selectAll) return;
    const group = 'input[type=checkbox][data-pick="' + all.dataset.selectAll + '"]';
    document.querySelectorAll(group).forEach(function (box) { box.checked = all.checked; });
  });

  document.addEventListener("DOMContentLoaded", function () {
    const saved = localStorage.getItem(KEY);
    if (saved) select().value = saved;
    select().addEventListener("change", function () {
      localStorage.setItem(KEY, select().value);
      schedule();
    });
    button().addEventListener("click", function () {
      paused = !paused;
      localStorage.setItem(KEY + "-paused", paused ? "1" : "0");
      schedule();
    });
    schedule();
  });
})();
