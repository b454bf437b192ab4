/**
 * A small seedable random generator: xoshiro128** seeded through splitmix32. Everything random in the
 * engine (shuffling and augmentation in src/data, parameter initialisation in src/nn) draws from it, so
 * a run is reproducible from its seed. Web-standard only.
 *
 * Seeds are integers; `deriveSeed(base, ...keys)` hashes a base seed with more integers (an
 * epoch, a sample index) into an independent 32-bit seed, so that the stream used for one
 * sample does not depend on the order in which samples happen to be processed.
 */

const TWO_POW_32 = 0x1_0000_0000;

/** splitmix32 step: returns [next state, output]. */
function splitmix32(state: number): [number, number] {
  const s = (state + 0x9e3779b9) | 0;
  let z = s;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  z ^= z >>> 16;
  return [s, z >>> 0];
}

/** Folds an arbitrary safe integer (negative, or above 2^32) into 32 bits without losing its high part. */
function fold(n: number): number {
  if (!Number.isSafeInteger(n)) throw new RangeError(`seed parts must be safe integers, got ${n}`);
  const lo = n >>> 0;
  const hi = Math.floor(n / TWO_POW_32) >>> 0;
  return (lo ^ Math.imul(hi, 0x27d4eb2d)) >>> 0;
}

/** Mixes a base seed with further integer keys (epoch, index, ...) into one 32-bit seed. */
export function deriveSeed(base: number, ...keys: number[]): number {
  let [state, out] = splitmix32(fold(base));
  for (const key of keys) {
    [state, out] = splitmix32((state ^ fold(key) ^ out) >>> 0);
  }
  [, out] = splitmix32((state ^ out) >>> 0);
  return out;
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

export class Random {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  constructor(seed: number) {
    let st = fold(seed);
    const out: number[] = [];
    for (let i = 0; i < 4; i++) {
      let v: number;
      [st, v] = splitmix32(st);
      out.push(v);
    }
    [this.s0, this.s1, this.s2, this.s3] = out as [number, number, number, number];
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1;
  }

  /** Next 32-bit unsigned integer (xoshiro128**). */
  nextUint32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0;
    const t = this.s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** A double uniformly distributed in [0, 1), with 53 random bits. */
  random(): number {
    const hi = this.nextUint32() >>> 5; // 27 bits
    const lo = this.nextUint32() >>> 6; // 26 bits
    return (hi * 67108864 + lo) / 9007199254740992;
  }

  /** A double uniformly distributed in [lo, hi), like torch's `uniform_(lo, hi)`. */
  uniform(lo = 0, hi = 1): number {
    return lo + (hi - lo) * this.random();
  }

  /** An integer uniformly distributed in [lo, hi], both ends included (unbiased). */
  randint(lo: number, hi: number): number {
    if (!Number.isInteger(lo) || !Number.isInteger(hi)) throw new RangeError(`randint bounds must be integers, got ${lo}, ${hi}`);
    if (hi < lo) throw new RangeError(`randint: empty range [${lo}, ${hi}]`);
    const span = hi - lo + 1;
    if (span > TWO_POW_32) throw new RangeError(`randint: range wider than 2^32`);
    if (span === TWO_POW_32) return lo + this.nextUint32();
    // Rejection sampling: accept only draws below the largest multiple of span.
    const limit = TWO_POW_32 - (TWO_POW_32 % span);
    let x: number;
    do {
      x = this.nextUint32();
    } while (x >= limit);
    return lo + (x % span);
  }

  /** Shuffles `items` in place (Fisher-Yates) and returns it. */
  shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.randint(0, i);
      const tmp = items[i] as T;
      items[i] = items[j] as T;
      items[j] = tmp;
    }
    return items;
  }

  /** A random permutation of 0..n-1. */
  permutation(n: number): number[] {
    return this.shuffle(Array.from({ length: n }, (_, i) => i));
  }
}
