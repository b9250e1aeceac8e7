// Live refresh without a build step: re-fetch this page and swap <main>, every N seconds.
(function () {
  const KEY = "queuectl-refresh";
  let timer = null;
  let paused = localStorage.getItem(KEY + "-paused") === "1";
  const select = () => document.getElementById("refresh-interval");
  const button = () => document.getElementById("refresh-toggle");

  async function refresh() {
    if (document.activeElement && document.activeElement.tagName === "INPUT") return;
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
