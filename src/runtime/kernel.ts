// A kernel is WGSL source + entry point. Its bindings and the byte layout of its `params` uniform struct come
// from reflecting the WGSL with wgsl_reflect, so host code binds buffers and passes params by name.
import { ResourceType, WgslReflect } from 'wgsl_reflect/wgsl_reflect.module.js';

export interface KernelDef {
  /** Names the kernel in labels and error messages: `conv2dBackwardWeight`, not `k7`. */
  name: string;
  wgsl: string;
  entryPoint?: string;
  /** Values for WGSL `override` declarations (tile sizes, workgroup size...). Part of the pipeline cache key. */
  constants?: Record<string, number>;
}

export type BindingKind = 'uniform' | 'read-only-storage' | 'storage' | 'texture' | 'storage-texture';

export interface BindingInfo {
  name: string;
  binding: number;
  kind: BindingKind;
  /** Textures only: the view dimension ('2d', '2d-array'). Storage textures: their format too. */
  viewDimension?: GPUTextureViewDimension;
  format?: GPUTextureFormat;
}

export type ScalarType = 'u32' | 'i32' | 'f32';

export interface ParamMember {
  name: string;
  offset: number;
  type: ScalarType;
}

export interface ParamsLayout {
  /** The uniform variable's name in WGSL (by convention `params`). */
  variable: string;
  binding: number;
  /** Size of the struct in bytes (uniform buffers need a multiple of 16). */
  size: number;
  members: Map<string, ParamMember>;
}

export interface KernelLayout {
  name: string;
  entryPoint: string;
  workgroupSize: [number, number, number];
  /** The storage-buffer and texture bindings of group 0, in binding order. */
  buffers: BindingInfo[];
  params: ParamsLayout | null;
}

const layoutCache = new Map<string, KernelLayout>();

/** Reflects a kernel's WGSL (cached by source + entry point). Only @group(0) is used by this engine. */
export function reflectKernel(def: KernelDef): KernelLayout {
  const entryPoint = def.entryPoint ?? 'main';
  const key = `${entryPoint}\u0000${def.wgsl}`;
  const cached = layoutCache.get(key);
  if (cached) return { ...cached, name: def.name };

  let reflect: WgslReflect;
  try {
    reflect = new WgslReflect(def.wgsl);
  } catch (e) {
    throw new Error(`kernel ${def.name}: WGSL could not be parsed for reflection: ${(e as Error).message}`);
  }
  const entry = reflect.entry.compute.find((f) => f.name === entryPoint);
  if (!entry) throw new Error(`kernel ${def.name}: no @compute entry point named "${entryPoint}"`);

  const buffers: BindingInfo[] = [];
  let params: ParamsLayout | null = null;
  // Only the resources the entry point uses end up in its pipeline; bind exactly those.
  for (const v of entry.resources) {
    if (v.group !== 0) throw new Error(`kernel ${def.name}: binding ${v.name} is in group ${v.group}; only group 0 is used`);
    if (v.resourceType === ResourceType.Uniform) {
      if (params) throw new Error(`kernel ${def.name}: more than one uniform (${params.variable}, ${v.name})`);
      params = paramsLayout(def.name, v.name, v.binding, v.size, v.members ?? []);
    } else if (v.resourceType === ResourceType.Storage) {
      buffers.push({ name: v.name, binding: v.binding, kind: v.access === 'read' ? 'read-only-storage' : 'storage' });
    } else if (v.resourceType === ResourceType.Texture || v.resourceType === ResourceType.StorageTexture) {
      buffers.push(textureBinding(def.name, v.name, v.binding, v.resourceType === ResourceType.StorageTexture, v.type));
    } else {
      throw new Error(`kernel ${def.name}: binding ${v.name} is a sampler or external texture, which this runtime does not bind`);
    }
  }
  buffers.sort((a, b) => a.binding - b.binding);
  const ws = entry.workgroupSize ?? [1, 1, 1];
  const layout: KernelLayout = { name: def.name, entryPoint, workgroupSize: [ws[0], ws[1] ?? 1, ws[2] ?? 1], buffers, params };
  layoutCache.set(key, layout);
  return layout;
}

// Textures hold f32 data read with textureLoad (no sampler), so sampled ones are 'unfilterable-float'; storage
// textures are write-only rgba32float. Only 2d and 2d-array views are used.
function textureBinding(
  kernel: string,
  name: string,
  binding: number,
  storage: boolean,
  type: { name: string; format?: { name: string } | null },
): BindingInfo {
  const dims: Record<string, GPUTextureViewDimension> = {
    texture_2d: '2d',
    texture_2d_array: '2d-array',
    texture_storage_2d: '2d',
    texture_storage_2d_array: '2d-array',
  };
  const viewDimension = dims[type.name];
  if (!viewDimension) throw new Error(`kernel ${kernel}: texture ${name} has type ${type.name}; only 2d and 2d-array textures are supported`);
  if (!storage) {
    if (type.format?.name !== 'f32') throw new Error(`kernel ${kernel}: texture ${name} must be ${type.name}<f32>`);
    return { name, binding, kind: 'texture', viewDimension };
  }
  if (type.format?.name !== 'rgba32float') throw new Error(`kernel ${kernel}: storage texture ${name} must be rgba32float`);
  return { name, binding, kind: 'storage-texture', viewDimension, format: 'rgba32float' };
}

function paramsLayout(
  kernel: string,
  variable: string,
  binding: number,
  size: number,
  members: { name: string; offset: number; type: { name: string } }[],
): ParamsLayout {
  const map = new Map<string, ParamMember>();
  for (const m of members) {
    const t = m.type.name;
    if (t !== 'u32' && t !== 'i32' && t !== 'f32') {
      throw new Error(`kernel ${kernel}: params member ${m.name} has type ${t}; only u32/i32/f32 scalars are supported`);
    }
    map.set(m.name, { name: m.name, offset: m.offset, type: t });
  }
  return { variable, binding, size: Math.ceil(size / 16) * 16, members: map };
}

/** Writes `values` into `view` at `base` following the reflected layout; every member must be given, no others. */
export function packParams(layout: ParamsLayout, kernel: string, values: Record<string, number>, view: DataView, base: number): void {
  for (const name of Object.keys(values)) {
    if (!layout.members.has(name)) {
      throw new Error(`kernel ${kernel}: unknown param "${name}" (params are: ${[...layout.members.keys()].join(', ')})`);
    }
  }
  for (const m of layout.members.values()) {
    const v = values[m.name];
    if (v === undefined) throw new Error(`kernel ${kernel}: param "${m.name}" was not given`);
    if (m.type === 'f32') view.setFloat32(base + m.offset, v, true);
    else {
      if (!Number.isInteger(v)) throw new Error(`kernel ${kernel}: param "${m.name}" is ${m.type} but got ${v}`);
      if (m.type === 'u32') {
        if (v < 0 || v > 0xffffffff) throw new Error(`kernel ${kernel}: param "${m.name}"=${v} does not fit u32`);
        view.setUint32(base + m.offset, v, true);
      } else view.setInt32(base + m.offset, v, true);
    }
  }
}
