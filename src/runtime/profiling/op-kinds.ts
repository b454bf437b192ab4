// What the profiler reports time under. A dispatch is attributed to the innermost op scope open when it was
// recorded (ops open scopes with rt.profiler?.begin(kind, label, flop) / rt.profiler?.end()); a kernel whose
// name matches a rule marked `always` keeps the rule's kind even inside a scope (padding and transpose copies
// inside a conv call are reported as copies), and the rules also classify dispatches recorded outside any scope.
// Extend KERNEL_KIND_RULES when a new kernel should be told apart by name.

export const OP_KINDS = {
  'conv.forward': 'conv forward',
  'conv.backwardData': 'conv data gradient',
  'conv.backwardWeight': 'conv weight gradient',
  copy: 'pad / transpose / buffer copies',
  'bn.forward': 'BatchNorm forward',
  'bn.backward': 'BatchNorm backward',
  relu: 'ReLU (fwd + bwd)',
  pool: 'pooling (max, avg; fwd + bwd)',
  add: 'residual add (fwd + bwd)',
  linear: 'linear (fc)',
  crossEntropy: 'cross-entropy (fwd + bwd)',
  sgd: 'SGD update',
  other: 'other',
} as const;

export type OpKind = keyof typeof OP_KINDS;

/** The conv kinds: their scopes carry a direct-convolution FLOP count. */
export const CONV_KINDS: readonly OpKind[] = ['conv.forward', 'conv.backwardData', 'conv.backwardWeight'];

export interface KernelKindRule {
  /** Tested against the kernel's name (KernelDef.name), or 'copyBufferToBuffer' / 'copyBufferToTexture' / 'clearBuffer'. */
  match: RegExp;
  kind: OpKind;
  /** Wins over the enclosing scope's kind (memory copies made on behalf of an op). */
  always?: boolean;
}

export const KERNEL_KIND_RULES: readonly KernelKindRule[] = [
  { match: /^(copyBufferToBuffer|copyBufferToTexture|clearBuffer|fill)$/, kind: 'copy', always: true },
  { match: /^conv2d(Pad|Transpose)/, kind: 'copy', always: true },
  { match: /^conv2dBackwardWeight|^conv2dSumPartials/, kind: 'conv.backwardWeight' },
  { match: /^conv2dCol2im/, kind: 'conv.backwardData' },
  { match: /^batchNorm(Grad|SavedAffine)/, kind: 'bn.backward' },
  { match: /^batchNorm/, kind: 'bn.forward' },
  { match: /^relu/, kind: 'relu' },
  { match: /Pool2d/, kind: 'pool' },
  { match: /^add(Vec4)?$/, kind: 'add' },
  { match: /^crossEntropy/, kind: 'crossEntropy' },
  { match: /^sgdUpdate/, kind: 'sgd' },
];

/** The kind a dispatch (or copy/clear command) named `name` is reported under, given its innermost scope's kind. */
export function classifyKernel(name: string, scopeKind: OpKind | null, rules: readonly KernelKindRule[] = KERNEL_KIND_RULES): OpKind {
  const rule = rules.find((r) => r.match.test(name));
  if (rule?.always) return rule.kind;
  return scopeKind ?? rule?.kind ?? 'other';
}
