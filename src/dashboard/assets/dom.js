// Building DOM nodes from data: text always goes in as text nodes (never innerHTML), so message
// data, stream names and error texts cannot inject markup.

/**
 * `h('a', { href: '#/x', class: 'btn', onClick }, 'text', child, [more])`.
 * Props whose value is null, undefined or false are left out.
 */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props ?? {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2).toLowerCase(), v);
    else if (k === 'class') el.className = v;
    else if (k === 'value') el.value = v;
    else if (k === 'checked') el.checked = Boolean(v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

/** A hash link: `link('#/streams/x', 'x')`. */
export function link(href, ...children) {
  return h('a', { href }, ...children);
}

/** Build a hash route from segments (each encoded) and an optional query object. */
export function route(segments, query) {
  const path = `#/${segments.map((s) => encodeURIComponent(String(s))).join('/')}`;
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query ?? {}))
    if (v !== undefined && v !== null && v !== '') q.set(k, v);
  const qs = q.toString();
  return qs ? `${path}?${qs}` : path;
}
