/**
 * The fuzzer's own PRNG: xoshiro128** seeded through splitmix32, so a run is
 * reproduced exactly by its seed, and any single case by (seed, target,
 * case index) alone, without replaying the cases before it.
 *
 * @module
 */

function splitmix32(state: { s: number }): number {
  state.s = (state.s + 0x9e3779b9) | 0;
  let z = state.s;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

const rotl = (x: number, k: number) => (x << k) | (x >>> (32 - k));

/** xoshiro128** (Blackman and Vigna), 32-bit state words. */
export class Rng {
  #a: number;
  #b: number;
  #c: number;
  #d: number;

  /** One stream per (seed, stream, index): independent cases, each replayable alone. */
  constructor(seed: number, stream = 0, index = 0) {
    const st = { s: seed | 0 };
    const h1 = splitmix32(st);
    st.s = (h1 ^ Math.imul(stream + 1, 0x27d4eb2f)) | 0;
    const h2 = splitmix32(st);
    st.s = (h2 ^ Math.imul(index | 0, 0x165667b1) ^ Math.floor(index / 0x100000000)) | 0;
    this.#a = splitmix32(st);
    this.#b = splitmix32(st);
    this.#c = splitmix32(st);
    this.#d = splitmix32(st);
    if ((this.#a | this.#b | this.#c | this.#d) === 0) this.#a = 1;
  }

  /** A uniform uint32. */
  next(): number {
    const result = Math.imul(rotl(Math.imul(this.#b, 5), 7), 9) >>> 0;
    const t = this.#b << 9;
    this.#c ^= this.#a;
    this.#d ^= this.#b;
    this.#b ^= this.#c;
    this.#a ^= this.#d;
    this.#c ^= t;
    this.#d = rotl(this.#d, 11);
    return result;
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor((this.next() / 4294967296) * n);
  }

  /** An integer in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  /** True with probability p. */
  chance(p: number): boolean {
    return this.next() < p * 4294967296;
  }

  /** One element of a non-empty array. */
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }

  /** Small sizes usually, large ones sometimes: min(max, geometric-ish). */
  small(max: number): number {
    const r = this.next();
    if (r < 0x80000000) return this.int(Math.min(4, max + 1));
    if (r < 0xe0000000) return this.int(Math.min(16, max + 1));
    return this.int(max + 1);
  }
}

/** A fresh random seed (for runs that are not pinned). */
export function randomSeed(): number {
  return crypto.getRandomValues(new Uint32Array(1))[0]!;
}
