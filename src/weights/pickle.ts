// A restricted unpickler for the subset of Python's pickle format that torch.save emits for
// state dicts (protocol 2, plus the few protocol 3/4 opcodes that are trivially safe).
//
// Hand-written on purpose: pickle is a small stack-machine language whose GLOBAL/REDUCE opcodes
// import and call arbitrary Python objects. No maintained npm package lets us whitelist globals
// and refuse everything else, so this reader never "executes" anything: a GLOBAL is only resolved
// through the caller's `resolveGlobal`, and an unknown name is an error naming the global.
//
// Web-standard APIs only: runs in browsers.

/** Values produced by allowed globals or persistent ids (opaque to the unpickler). */
export abstract class PickleExtension {
  abstract readonly description: string;
}

/** A callable global: REDUCE calls `fn` with the argument tuple. */
export class PickleCallable extends PickleExtension {
  constructor(
    readonly description: string,
    readonly fn: (args: readonly PickleValue[]) => PickleValue,
  ) {
    super();
  }
}

export type PickleKey = string | number | bigint | boolean | null;

/** dict and collections.OrderedDict. BUILD on it stores the state in `attributes` (torch's `_metadata`). */
export class PickleDict extends Map<PickleKey, PickleValue> {
  readonly attributes = new Map<string, PickleValue>();
}

/** A Python tuple (immutable); lists are plain mutable arrays. */
export type PickleTuple = readonly PickleValue[] & { readonly __tuple: true };

export type PickleValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | PickleValue[]
  | PickleTuple
  | PickleDict
  | PickleExtension;

export interface UnpickleOptions {
  /** Returns the value for `module.name`, or undefined if that global is not allowed. */
  resolveGlobal(module: string, name: string): PickleValue | undefined;
  /** Called for BINPERSID; undefined means persistent ids are not allowed. */
  persistentLoad?(pid: PickleValue): PickleValue;
}

export class PickleError extends Error {
  override name = 'PickleError';
}

export function isTuple(v: PickleValue): v is PickleTuple {
  return Array.isArray(v) && Object.isFrozen(v);
}

function makeTuple(items: PickleValue[]): PickleTuple {
  return Object.freeze(items) as unknown as PickleTuple;
}

/** A short Python-ish name of a value's type, for error messages. */
export function describePickleValue(v: PickleValue): string {
  if (v === null) return 'None';
  if (typeof v === 'boolean') return 'bool';
  if (typeof v === 'number') return Number.isInteger(v) ? 'int' : 'float';
  if (typeof v === 'bigint') return 'int';
  if (typeof v === 'string') return 'str';
  if (v instanceof Uint8Array) return 'bytes';
  if (Array.isArray(v)) return isTuple(v) ? 'tuple' : 'list';
  if (v instanceof PickleDict) return 'dict';
  if (v instanceof PickleExtension) return v.description;
  return 'tuple';
}

const textDecoder = new TextDecoder('utf-8', { fatal: true });

/** Opcode names for the error message when an unsupported opcode is met. */
const UNSUPPORTED_NAMES: Record<number, string> = {
  0x81: 'NEWOBJ',
  0x92: 'NEWOBJ_EX',
  0x69: 'INST',
  0x6f: 'OBJ',
  0x50: 'PERSID',
  0x82: 'EXT1',
  0x83: 'EXT2',
  0x84: 'EXT4',
  0x96: 'BYTEARRAY8',
  0x97: 'NEXT_BUFFER',
  0x98: 'READONLY_BUFFER',
};

export function unpickle(bytes: Uint8Array, options: UnpickleOptions): PickleValue {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const stack: PickleValue[] = [];
  // Stack heights at each pending MARK (marks are not kept on the value stack).
  const marks: number[] = [];
  const memo = new Map<number, PickleValue>();
  let pos = 0;

  const fail = (msg: string, at = pos): never => {
    throw new PickleError(`${msg} (pickle offset ${at})`);
  };
  const need = (n: number): void => {
    if (n < 0 || pos + n > bytes.length) {
      fail(`pickle data truncated: needed ${n} more bytes but only ${bytes.length - pos} remain`);
    }
  };
  const u8 = (): number => {
    need(1);
    return bytes[pos++]!;
  };
  const u16 = (): number => {
    need(2);
    const v = view.getUint16(pos, true);
    pos += 2;
    return v;
  };
  const u32 = (): number => {
    need(4);
    const v = view.getUint32(pos, true);
    pos += 4;
    return v;
  };
  const u64 = (): number => {
    need(8);
    const v = view.getBigUint64(pos, true);
    pos += 8;
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) fail(`length ${v} is too large`);
    return Number(v);
  };
  const take = (n: number): Uint8Array => {
    need(n);
    const out = bytes.subarray(pos, pos + n);
    pos += n;
    return out;
  };
  const utf8 = (n: number): string => {
    const start = pos;
    const b = take(n);
    try {
      return textDecoder.decode(b);
    } catch {
      return fail('invalid UTF-8 in string', start);
    }
  };
  const latin1 = (b: Uint8Array): string => {
    let s = '';
    for (let i = 0; i < b.length; i += 4096) s += String.fromCharCode(...b.subarray(i, i + 4096));
    return s;
  };
  const line = (): string => {
    const end = bytes.indexOf(0x0a, pos);
    if (end < 0) fail('pickle data truncated: unterminated line');
    const s = latin1(bytes.subarray(pos, end));
    pos = end + 1;
    return s;
  };

  const pop = (): PickleValue => {
    const base = marks.length > 0 ? marks[marks.length - 1]! : 0;
    if (stack.length <= base) fail('pickle stack underflow');
    return stack.pop()!;
  };
  const top = (): PickleValue => {
    const base = marks.length > 0 ? marks[marks.length - 1]! : 0;
    if (stack.length <= base) fail('pickle stack underflow');
    return stack[stack.length - 1]!;
  };
  const push = (v: PickleValue): void => {
    stack.push(v);
  };
  /** Pops everything above the most recent MARK (and the mark itself). */
  const popMark = (): PickleValue[] => {
    const m = marks.pop();
    if (m === undefined) fail('pickle MARK missing');
    return stack.splice(m!);
  };
  const memoPut = (idx: number): void => {
    memo.set(idx, top());
  };
  const memoGet = (idx: number): void => {
    if (!memo.has(idx)) fail(`pickle memo key ${idx} is undefined`);
    push(memo.get(idx)!);
  };
  const dictKey = (k: PickleValue): PickleKey => {
    if (k === null || typeof k !== 'object') return k;
    return fail(`unsupported dict key of type ${describePickleValue(k)}`);
  };
  const setItems = (dict: PickleValue, items: PickleValue[]): void => {
    if (!(dict instanceof PickleDict)) fail(`SETITEM(S) on a ${describePickleValue(dict)}, not a dict`);
    if (items.length % 2 !== 0) fail('SETITEMS with an odd number of items');
    for (let i = 0; i < items.length; i += 2) (dict as PickleDict).set(dictKey(items[i]!), items[i + 1]!);
  };
  const appendItems = (list: PickleValue, items: PickleValue[]): void => {
    if (!Array.isArray(list) || isTuple(list)) fail(`APPEND(S) on a ${describePickleValue(list)}, not a list`);
    (list as PickleValue[]).push(...items);
  };
  const global = (module: string, name: string, at: number): void => {
    const v = options.resolveGlobal(module, name);
    if (v === undefined) fail(`pickle global ${module}.${name} is not allowed`, at);
    push(v!);
  };

  for (;;) {
    const at = pos;
    if (pos >= bytes.length) fail('pickle data truncated: ended without a STOP opcode');
    const op = bytes[pos++]!;
    switch (op) {
      case 0x80: {
        // PROTO n
        const proto = u8();
        if (proto > 5) fail(`unsupported pickle protocol ${proto}`, at);
        break;
      }
      case 0x95: // FRAME: 8-byte length of the next frame; framing is irrelevant when all bytes are in memory
        u64();
        break;
      case 0x2e: {
        // STOP: the result is the top of the stack
        if (marks.length > 0 || stack.length !== 1) fail('malformed pickle: STOP with a non-singleton stack', at);
        return stack[0]!;
      }
      case 0x28: // MARK
        marks.push(stack.length);
        break;
      case 0x30: // POP
        if (marks.length > 0 && stack.length === marks[marks.length - 1]) marks.pop();
        else pop();
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x32: // DUP
        push(top());
        break;

      case 0x4e: // NONE
        push(null);
        break;
      case 0x88: // NEWTRUE
        push(true);
        break;
      case 0x89: // NEWFALSE
        push(false);
        break;
      case 0x4a: // BININT: 4-byte signed little-endian
        need(4);
        push(view.getInt32(pos, true));
        pos += 4;
        break;
      case 0x4b: // BININT1: 1-byte unsigned
        push(u8());
        break;
      case 0x4d: // BININT2: 2-byte unsigned
        push(u16());
        break;
      case 0x8a: // LONG1: n bytes, little-endian two's complement
      case 0x8b: {
        // LONG4
        const n = op === 0x8a ? u8() : u32();
        // State dicts hold small ints; refuse huge ones rather than spend quadratic time decoding.
        if (n > 64) fail(`integer of ${n} bytes is too large`, at);
        push(decodeLong(take(n)));
        break;
      }
      case 0x47: {
        // BINFLOAT: 8-byte big-endian IEEE double
        need(8);
        push(view.getFloat64(pos, false));
        pos += 8;
        break;
      }

      case 0x58: // BINUNICODE: 4-byte length + UTF-8
        push(utf8(u32()));
        break;
      case 0x8c: // SHORT_BINUNICODE: 1-byte length + UTF-8
        push(utf8(u8()));
        break;
      case 0x8d: // BINUNICODE8
        push(utf8(u64()));
        break;
      case 0x54: // BINSTRING (Python 2 str): 4-byte signed length, latin-1
        push(latin1(take(u32())));
        break;
      case 0x55: // SHORT_BINSTRING
        push(latin1(take(u8())));
        break;
      case 0x42: // BINBYTES
        push(copy(take(u32())));
        break;
      case 0x43: // SHORT_BINBYTES
        push(copy(take(u8())));
        break;
      case 0x8e: // BINBYTES8
        push(copy(take(u64())));
        break;

      case 0x29: // EMPTY_TUPLE
        push(makeTuple([]));
        break;
      case 0x85: // TUPLE1
        push(makeTuple([pop()]));
        break;
      case 0x86: {
        // TUPLE2
        const b = pop();
        const a = pop();
        push(makeTuple([a, b]));
        break;
      }
      case 0x87: {
        // TUPLE3
        const c = pop();
        const b = pop();
        const a = pop();
        push(makeTuple([a, b, c]));
        break;
      }
      case 0x74: // TUPLE: items since MARK
        push(makeTuple(popMark()));
        break;

      case 0x5d: // EMPTY_LIST
        push([]);
        break;
      case 0x6c: // LIST: items since MARK
        push(popMark());
        break;
      case 0x61: {
        // APPEND
        const item = pop();
        appendItems(top(), [item]);
        break;
      }
      case 0x65: {
        // APPENDS: items since MARK onto the list below the mark
        const items = popMark();
        appendItems(top(), items);
        break;
      }

      case 0x7d: // EMPTY_DICT
        push(new PickleDict());
        break;
      case 0x64: {
        // DICT: key/value pairs since MARK
        const d = new PickleDict();
        setItems(d, popMark());
        push(d);
        break;
      }
      case 0x73: {
        // SETITEM
        const v = pop();
        const k = pop();
        setItems(top(), [k, v]);
        break;
      }
      case 0x75: {
        // SETITEMS: key/value pairs since MARK into the dict below the mark
        const items = popMark();
        setItems(top(), items);
        break;
      }

      case 0x71: // BINPUT: 1-byte memo index
        memoPut(u8());
        break;
      case 0x72: // LONG_BINPUT: 4-byte memo index
        memoPut(u32());
        break;
      case 0x94: // MEMOIZE: next free memo index
        memoPut(memo.size);
        break;
      case 0x68: // BINGET
        memoGet(u8());
        break;
      case 0x6a: // LONG_BINGET
        memoGet(u32());
        break;

      case 0x63: {
        // GLOBAL: "module\nname\n"
        const module = line();
        const name = line();
        global(module, name, at);
        break;
      }
      case 0x93: {
        // STACK_GLOBAL: module and name strings from the stack
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') fail('STACK_GLOBAL needs two strings', at);
        global(module as string, name as string, at);
        break;
      }
      case 0x52: {
        // REDUCE: callable(*args)
        const args = pop();
        const fn = pop();
        if (!(fn instanceof PickleCallable)) fail(`REDUCE on a ${describePickleValue(fn)}, which is not callable`, at);
        if (!isTuple(args)) fail(`REDUCE arguments must be a tuple, not a ${describePickleValue(args)}`, at);
        push((fn as PickleCallable).fn(args as PickleTuple));
        break;
      }
      case 0x62: {
        // BUILD: obj.__setstate__(state); only dicts (OrderedDict attributes such as _metadata)
        const state = pop();
        const obj = top();
        if (!(obj instanceof PickleDict)) fail(`BUILD on a ${describePickleValue(obj)} is not supported`, at);
        if (!(state instanceof PickleDict)) fail(`BUILD with a ${describePickleValue(state)} state is not supported`, at);
        for (const [k, v] of state as PickleDict) {
          if (typeof k !== 'string') fail('BUILD state has a non-string attribute name', at);
          (obj as PickleDict).attributes.set(k as string, v);
        }
        break;
      }
      case 0x51: {
        // BINPERSID: persistent id from the stack (torch: a storage reference)
        const pid = pop();
        if (!options.persistentLoad) fail('pickle persistent ids are not allowed here', at);
        push(options.persistentLoad!(pid));
        break;
      }

      default: {
        const name = UNSUPPORTED_NAMES[op];
        fail(
          name
            ? `unsupported pickle opcode ${name} (0x${op.toString(16)})`
            : `unknown pickle opcode 0x${op.toString(16).padStart(2, '0')}`,
          at,
        );
      }
    }
  }
}

function copy(b: Uint8Array): Uint8Array {
  const out = new Uint8Array(b.length);
  out.set(b);
  return out;
}

/** Little-endian two's-complement integer; a number when it is a safe integer, else a bigint. */
function decodeLong(b: Uint8Array): number | bigint {
  if (b.length === 0) return 0;
  let v = 0n;
  for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]!);
  if (b[b.length - 1]! & 0x80) v -= 1n << BigInt(8 * b.length);
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}
