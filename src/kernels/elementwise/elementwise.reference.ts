export const reluReference = (x: ArrayLike<number>): Float64Array => Float64Array.from(x as ArrayLike<number>, (v) => Math.max(v, 0));
export const addReference = (a: ArrayLike<number>, b: ArrayLike<number>): Float64Array =>
  Float64Array.from({ length: a.length }, (_, i) => a[i]! + b[i]!);
