// An ES module because package.json says "type": "module"; top-level await works.
const started = await Promise.resolve(Date.now());

export async function handler(event) {
  return { esm: "type-module", started: typeof started, event };
}
