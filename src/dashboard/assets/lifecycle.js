// Page lifecycle: cleanups to run when the user navigates away, and a way to re-render after an
// action. Kept apart from app.js so pages do not import the shell.

let cleanups = [];
let reloader = () => {};

/** Run `fn` when the current page is left (stop timers, close event sources). */
export function onLeave(fn) {
  cleanups.push(fn);
}

export function leavePage() {
  const fns = cleanups;
  cleanups = [];
  for (const fn of fns) fn();
}

export function setReloader(fn) {
  reloader = fn;
}

/** Re-render the current page and the header counts. */
export function reload() {
  reloader();
}

/** Call `fn` every `ms` while the page is shown and the tab is visible. */
export function every(ms, fn) {
  const t = setInterval(() => {
    if (!document.hidden && !document.querySelector('dialog[open]')) void fn();
  }, ms);
  onLeave(() => clearInterval(t));
}
