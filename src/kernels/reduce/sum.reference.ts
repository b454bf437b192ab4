export function sumReference(x: ArrayLike<number>, factor = 1): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i]!;
  return s * factor;
}
