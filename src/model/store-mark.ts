/**
 * The mark of the store that made a kernel object (state/store-id.ts), in the words a link alias carries:
 * `netctx store ID DIR`. The directory is there so that a refusal can name the other store; an alias holds at most
 * 255 bytes (IFALIASZ), so a longer one is cut, and only the id is compared.
 */
export interface StoreMark {
  id: string;
  dir?: string;
}

const PREFIX = "netctx store ";
const ALIAS_MAX = 255;

export function storeMarkText(mark: StoreMark): string {
  const text = `${PREFIX}${mark.id}${mark.dir ? ` ${mark.dir}` : ""}`;
  return Buffer.byteLength(text) <= ALIAS_MAX ? text : `${PREFIX}${mark.id}`;
}

/** The mark an alias carries, if it is one of ours. */
export function parseStoreMark(alias: string | undefined): StoreMark | undefined {
  if (!alias?.startsWith(PREFIX)) return undefined;
  const [id, ...dir] = alias.slice(PREFIX.length).split(" ");
  if (!id) return undefined;
  return dir.length ? { id, dir: dir.join(" ") } : { id };
}

/** The cgroup xattr that carries a store's id. */
export const STORE_XATTR = "user.netctx.store";
