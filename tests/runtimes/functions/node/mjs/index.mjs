// An ES module by its extension.
import { basename } from "node:path";

export const handler = async (event) => ({ esm: "mjs", file: basename(import.meta.url), event });
