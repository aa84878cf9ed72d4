/** Elements built with textContent only: names and evidence come from the engine and are never parsed as HTML. */

type Child = Node | string | number | undefined | null | false;

export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string> = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  for (const c of children)
    if (c !== undefined && c !== null && c !== false) node.append(typeof c === "number" ? String(c) : c);
  return node;
}

export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const node = document.getElementById(id);
  if (!node) throw new Error(`the page lacks #${id}`);
  return node as T;
}

export async function getJson<T>(path: string, init: RequestInit = {}): Promise<T> {
  const res = await fetch(path, { credentials: "same-origin", ...init });
  if (!res.ok) throw new Error(`${init.method ?? "GET"} ${path}: ${res.status}`);
  return (await res.json()) as T;
}

/** A row's verdict: "ok", or "DIFFERS" marked for the eye. */
export function verdict(ok: boolean): HTMLElement {
  return ok ? el("span", { class: "ok" }, "ok") : el("span", { class: "differs-text" }, "DIFFERS");
}
