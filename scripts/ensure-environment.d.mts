// Types of scripts/ensure-environment.mjs (plain JS: it runs before the packages are installed).
import type { SpawnSyncReturns } from 'node:child_process';

export class Stop extends Error {}

export interface Lockfile {
  packages?: Record<string, { version?: string; optional?: boolean; link?: boolean }>;
}
export function packagesOutOfDate(lock: Lockfile, installed: Lockfile | null): string | null;

export function parseOsRelease(text: string | null | undefined): Record<string, string>;

export type AdapterFix = { action: 'setup'; command: string } | { action: 'stop'; message: string };
export function planAdapterFix(system: { platform: string; uid: number; osRelease: Record<string, string> }): AdapterFix;

export function chromiumCandidates(env?: Record<string, string | undefined>): string[];
export type ChromiumFix = { action: 'setup'; command: string } | { action: 'note'; message: string };
export function planChromiumFix(system: { platform: string; uid: number; osRelease: Record<string, string> }): ChromiumFix;

export interface StepContext {
  say(text: string): void;
  run(command: string, args: string[], options?: object): SpawnSyncReturns<string | Buffer>;
}
export type Step = [name: string, run: (ctx: StepContext) => Promise<void>];
export const STEPS: Step[];

export function ensureEnvironment(options?: {
  steps?: Step[];
  log?: (line: string) => void;
  run?: (command: string, args: string[], options: object) => SpawnSyncReturns<string | Buffer>;
}): Promise<number>;
