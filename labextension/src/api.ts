/**
 * The server extension's REST API (nbcontainers/lab/handlers.py): the user's container
 * kernels, one kernel's log tail, and stopping one.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/** One GPU as NVML sees it inside the container. */
export interface IGPU {
  index: number;
  name: string;
  utilization: number | null;
  memory_used: number | null;
  memory_total: number | null;
}

/** One container kernel, as GET /api/nbcontainers/kernels lists it (sizes in bytes). */
export interface IKernelRecord {
  kernel_id: string;
  container_id: string;
  name: string;
  image: string;
  image_ref: string;
  digest: string | null;
  engine: string;
  node: string | null;
  state: string;
  exit_code: number | null;
  oom_killed: boolean;
  memory_used: number | null;
  memory_limit: number | null;
  mem_limit_setting: string | null;
  cpu_percent: number | null;
  cpu_limit: number | null;
  gpus: IGPU[] | null;
  notebook: string | null;
  server_kernel: boolean;
  relayed: boolean;
  parent_kernel_id: string | null;
  pooled: boolean;
  started_at: string;
  uptime_s: number | null;
  ended_at: number | null;
  advice: string | null;
}

const settings = ServerConnection.makeSettings();

function url(...parts: string[]): string {
  return URLExt.join(settings.baseUrl, 'api', 'nbcontainers', 'kernels', ...parts);
}

async function call(path: string, init: RequestInit = {}): Promise<Response> {
  const response = await ServerConnection.makeRequest(path, init, settings);
  if (!response.ok) {
    throw new ServerConnection.ResponseError(response);
  }
  return response;
}

export async function listKernels(): Promise<IKernelRecord[]> {
  return (await call(url())).json();
}

export async function kernelLogs(key: string, tail = 20): Promise<string> {
  const body = await (await call(url(key, 'logs') + `?tail=${tail}`)).json();
  return body.logs as string;
}

export async function stopKernel(key: string): Promise<void> {
  await call(url(key), { method: 'DELETE' });
}

/** Bytes as people read them: "512 MiB", "1.4 GiB". */
export function size(bytes: number | null): string {
  if (bytes === null) {
    return 'unknown';
  }
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value >= 10 || unit === 0 ? value.toFixed(0) : value.toFixed(1)} ${units[unit]}`;
}

/** "3 min", "2 h 5 min" */
export function duration(seconds: number | null): string {
  if (seconds === null) {
    return '';
  }
  const minutes = Math.floor(seconds / 60);
  if (minutes < 1) {
    return `${Math.floor(seconds)} s`;
  }
  if (minutes < 60) {
    return `${minutes} min`;
  }
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

/** "Mem 1.2 GiB / 2 GiB", "Mem unknown" where the engine can't account it. */
export function memoryText(r: IKernelRecord): string {
  if (r.memory_used === null) {
    return 'Mem unknown';
  }
  return r.memory_limit === null
    ? `Mem ${size(r.memory_used)}`
    : `Mem ${size(r.memory_used)} / ${size(r.memory_limit)}`;
}

export function cpuText(r: IKernelRecord): string {
  if (r.cpu_percent === null) {
    return 'CPU unknown';
  }
  const quota = r.cpu_limit === null ? '' : ` of ${r.cpu_limit} CPU`;
  return `CPU ${r.cpu_percent.toFixed(0)}%${quota}`;
}

export function gpuText(r: IKernelRecord): string {
  if (!r.gpus || r.gpus.length === 0) {
    return '';
  }
  return r.gpus
    .map(
      g =>
        `GPU${g.index} ${g.utilization === null ? '?' : g.utilization.toFixed(0)}% ` +
        `${size(g.memory_used)} / ${size(g.memory_total)}`
    )
    .join(' · ');
}

/** Near the cap: the status bar turns to a warning. */
export function nearLimit(r: IKernelRecord): boolean {
  return r.memory_used !== null && r.memory_limit !== null && r.memory_used > 0.9 * r.memory_limit;
}
