// wgsl_reflect 1.6.0's package "main" is a CommonJS file inside a "type": "module" package, which Node refuses to
// load; src/runtime/kernel.ts imports the package's ES module build directly, which has the same API.
declare module 'wgsl_reflect/wgsl_reflect.module.js' {
  export * from 'wgsl_reflect';
}
