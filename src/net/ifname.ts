/**
 * The kernel's rule for an interface name (dev_valid_name): 1 to 15 bytes (IFNAMSIZ 16 with the NUL), no "/", ":"
 * or whitespace, not "." or "..". Bytes, not characters: "é" takes two of the fifteen.
 */

export const IFNAME_MAX = 15;

/** Why the kernel would refuse `name` as an interface name, or undefined when it would take it. */
export function ifnameProblem(name: string): string | undefined {
  if (name.length === 0) return "an interface name must not be empty";
  const bytes = Buffer.byteLength(name);
  if (bytes > IFNAME_MAX)
    return `interface name ${shown(name)} is longer than ${IFNAME_MAX} bytes (${bytes})`;
  if (/[/:\s]/.test(name) || name === "." || name === "..")
    return `${shown(name)} is not a valid interface name (no "/", ":", whitespace, "." or "..")`;
  return undefined;
}

/** A name inside an error message: quoted, escaped (a newline would split the one-line error), capped. */
export function shown(text: string): string {
  return JSON.stringify(text.length > 80 ? `${text.slice(0, 80)}...` : text);
}
