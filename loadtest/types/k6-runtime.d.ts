// What src/sim/portable/audio.js probes for at run time: k6's JS runtime has no TextEncoder or
// TextDecoder in older releases, so they are declared as possibly absent (audio.js falls back to ASCII).
declare var TextEncoder: undefined | (new () => { encode(input: string): Uint8Array });
declare var TextDecoder: undefined | (new () => { decode(input: Uint8Array): string });
