/**
 * The status bar item (one notebook's container kernel) and the kernels panel (all of the
 * user's), both drawn from the poller's latest list.
 */
import { Widget } from '@lumino/widgets';
import { Signal } from '@lumino/signaling';
import { showErrorMessage } from '@jupyterlab/apputils';

import {
  IKernelRecord,
  cpuText,
  duration,
  gpuText,
  kernelLogs,
  listKernels,
  memoryText,
  nearLimit,
  size,
  stopKernel
} from './api';

/** Asks the server every couple of seconds while the page is visible. */
export class Poller {
  readonly changed = new Signal<this, IKernelRecord[]>(this);
  records: IKernelRecord[] = [];
  private timer = 0;
  private busy = false;

  constructor(private interval = 2000) {}

  start(): void {
    void this.refresh();
    this.timer = window.setInterval(() => {
      if (!document.hidden) {
        void this.refresh();
      }
    }, this.interval);
  }

  async refresh(): Promise<void> {
    if (this.busy) {
      return; // a slow answer (an engine under load): never pile requests up
    }
    this.busy = true;
    try {
      this.records = await listKernels();
    } catch (error) {
      // A server without the extension, or one restarting: keep the last list, try again.
      return;
    } finally {
      this.busy = false;
    }
    this.changed.emit(this.records);
  }

  dispose(): void {
    window.clearInterval(this.timer);
  }
}

/** The container behind a notebook's kernel: its own (picked kernelspec) or the one its
 * local kernel relays to (`%container use`), the newest running one first. */
export function recordFor(
  records: IKernelRecord[],
  kernelId: string | undefined
): IKernelRecord | null {
  if (!kernelId) {
    return null;
  }
  const live = records.filter(r => r.ended_at === null && r.state === 'running');
  const own = live.find(r => r.server_kernel && r.kernel_id === kernelId);
  if (own) {
    return own;
  }
  const relayed = live
    .filter(r => r.relayed && r.parent_kernel_id === kernelId)
    .sort((a, b) => (a.started_at < b.started_at ? 1 : -1));
  return relayed[0] ?? null;
}

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className: string,
  text = ''
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  node.className = className;
  node.textContent = text;
  return node;
}

/** "python · Docker · Mem 1.2 GiB / 2 GiB · CPU 12%" for the current notebook's kernel. */
export class KernelStatus extends Widget {
  constructor() {
    super();
    this.addClass('nbc-status');
    this.node.dataset.nbc = 'status';
  }

  display(record: IKernelRecord | null): void {
    this.node.textContent = '';
    this.toggleClass('nbc-warning', record !== null && nearLimit(record));
    if (record === null) {
      // A plain local kernel: nothing to say.
      this.node.title = '';
      this.node.dataset.state = 'none';
      this.hide();
      return;
    }
    this.show();
    this.node.dataset.state = record.state;
    const parts = [record.image, record.engine, memoryText(record), cpuText(record)];
    const gpu = gpuText(record);
    if (gpu) {
      parts.push(gpu);
    }
    this.node.appendChild(el('span', 'nbc-status-text', parts.join(' · ')));
    this.node.title =
      `${record.image_ref}\n${record.digest ?? 'digest unknown'}\n` +
      `${record.engine}${record.relayed ? ' (%container use)' : ''}\n` +
      `container ${record.name}`;
  }
}

/** The left sidebar's list of the user's container kernels, with stop and logs. */
export class KernelsPanel extends Widget {
  private openLogs = new Set<string>();

  constructor(private poller: Poller) {
    super();
    this.id = 'nbcontainers-kernels';
    this.addClass('nbc-panel');
    this.title.caption = 'Container kernels';
    poller.changed.connect((_, records) => this.render(records));
  }

  private render(records: IKernelRecord[]): void {
    this.node.textContent = '';
    this.node.appendChild(el('h2', 'nbc-panel-title', 'Container kernels'));
    const groups: [string, IKernelRecord[]][] = [
      ['Kernels', records.filter(r => !r.pooled && r.ended_at === null)],
      ['Warm pool (idle)', records.filter(r => r.pooled && r.ended_at === null)],
      ['Ended', records.filter(r => r.ended_at !== null)]
    ];
    for (const [title, group] of groups) {
      if (group.length === 0 && title !== 'Kernels') {
        continue;
      }
      const section = el('section', 'nbc-group');
      const cost = group.reduce((sum, r) => sum + (r.memory_used ?? 0), 0);
      section.appendChild(
        el('h3', 'nbc-group-title', `${title} (${group.length})${cost ? ' · ' + size(cost) : ''}`)
      );
      if (group.length === 0) {
        section.appendChild(el('p', 'nbc-empty', 'No container kernels.'));
      }
      for (const record of group) {
        section.appendChild(this.row(record));
      }
      this.node.appendChild(section);
    }
  }

  private row(r: IKernelRecord): HTMLElement {
    const row = el('div', 'nbc-kernel');
    row.dataset.kernelId = r.kernel_id;
    row.dataset.containerId = r.container_id;
    row.dataset.state = r.state;
    row.appendChild(el('div', 'nbc-kernel-image', r.image));
    row.appendChild(
      el(
        'div',
        'nbc-kernel-where',
        `${r.notebook ?? (r.pooled ? 'warm pool' : 'no notebook')}` +
          `${r.relayed ? ' (%container use)' : ''} · ${r.engine}`
      )
    );
    // A dead kernel has no figures left, only the limit it met.
    const memory =
      r.ended_at === null ? memoryText(r) : r.memory_limit === null ? '' : `limit ${size(r.memory_limit)}`;
    const figures = [r.state, duration(r.uptime_s), memory, gpuText(r)].filter(Boolean);
    row.appendChild(el('div', 'nbc-kernel-figures', figures.join(' · ')));
    if (r.ended_at === null) {
      const buttons = el('div', 'nbc-kernel-buttons');
      const stop = el('button', 'jp-Button jp-mod-styled jp-mod-warn nbc-stop', 'Stop');
      stop.onclick = async () => {
        stop.disabled = true;
        try {
          await stopKernel(r.container_id);
        } catch (error) {
          void showErrorMessage('Could not stop the kernel', String(error));
        }
        await this.poller.refresh();
      };
      const logs = el('button', 'jp-Button jp-mod-styled nbc-logs', 'Logs');
      logs.onclick = async () => {
        if (this.openLogs.has(r.container_id)) {
          this.openLogs.delete(r.container_id);
        } else {
          this.openLogs.add(r.container_id);
        }
        await this.poller.refresh();
      };
      buttons.append(stop, logs);
      row.appendChild(buttons);
    }
    if (this.openLogs.has(r.container_id)) {
      const pre = el('pre', 'nbc-log', '…');
      row.appendChild(pre);
      kernelLogs(r.container_id).then(
        text => (pre.textContent = text || '(no output)'),
        () => (pre.textContent = '(logs unavailable)')
      );
    }
    return row;
  }
}
