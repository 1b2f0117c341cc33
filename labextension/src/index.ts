/**
 * nbcontainers-lab: container kernels in JupyterLab 4 and Notebook 7. A status bar item (a
 * notebook toolbar item where there is no status bar, as in Notebook 7), a kernels panel in
 * the left sidebar, and a dialog that explains an OOM kill where it happens.
 */
import {
  ILabShell,
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { Dialog, showDialog } from '@jupyterlab/apputils';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { IStatusBar } from '@jupyterlab/statusbar';
import { kernelIcon } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

import { IKernelRecord, size } from './api';
import { KernelStatus, KernelsPanel, Poller, recordFor } from './widgets';

function kernelIdOf(panel: NotebookPanel | null): string | undefined {
  return panel?.sessionContext.session?.kernel?.id;
}

/** Shows each OOM kill of an open notebook's kernel once, with the limit and the fix. */
class OOMWatch {
  private seen = new Set<string>();
  private first = true;

  constructor(private tracker: INotebookTracker) {}

  check(records: IKernelRecord[]): void {
    const killed = records.filter(r => r.state === 'oom-killed');
    if (this.first) {
      // Kills from before this page was opened are in the panel, not in a dialog.
      killed.forEach(r => this.seen.add(this.key(r)));
      this.first = false;
      return;
    }
    const open = new Map<string, NotebookPanel>();
    this.tracker.forEach(panel => {
      const id = kernelIdOf(panel);
      if (id) {
        open.set(id, panel);
      }
    });
    for (const r of killed) {
      const key = this.key(r);
      const owner = open.get(r.kernel_id) ?? open.get(r.parent_kernel_id ?? '');
      if (this.seen.has(key) || !owner) {
        continue;
      }
      this.seen.add(key);
      void this.explain(r, owner);
    }
  }

  private key(r: IKernelRecord): string {
    return r.container_id; // a container is killed once
  }

  private async explain(r: IKernelRecord, panel: NotebookPanel): Promise<void> {
    const body = document.createElement('div');
    body.className = 'nbc-oom';
    const limit = r.memory_limit === null ? 'its memory limit' : size(r.memory_limit);
    const setting = r.mem_limit_setting ? ` (mem_limit "${r.mem_limit_setting}")` : '';
    const lines = [
      `The kernel of ${panel.context.path} ran out of memory: the ${r.engine} engine ` +
        `killed its container (${r.image}) at ${limit}${setting}.`,
      r.advice ?? ''
    ];
    for (const line of lines.filter(Boolean)) {
      const p = document.createElement('p');
      p.textContent = line;
      body.appendChild(p);
    }
    // JupyterLab's own "Kernel Restarting ... appears to have died" for this notebook says
    // less: this dialog takes its place (dialogs queue, so it would otherwise wait behind).
    Dialog.tracker.forEach(dialog => {
      const header = dialog.node.querySelector('.jp-Dialog-header')?.textContent ?? '';
      const text = dialog.node.textContent ?? '';
      if (header.includes('Kernel Restarting') && text.includes(panel.context.path)) {
        dialog.reject();
      }
    });
    await showDialog({
      title: `Kernel killed: out of memory (limit ${limit})`,
      body: new WidgetBody(body),
      buttons: [Dialog.okButton({ label: 'OK' })]
    });
  }
}

class WidgetBody extends Widget {
  constructor(node: HTMLElement) {
    super({ node });
  }
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'nbcontainers-lab:plugin',
  description: 'Image, memory, CPU and GPU of container kernels; a kernels panel; OOM dialogs.',
  autoStart: true,
  requires: [INotebookTracker],
  optional: [IStatusBar, ILabShell, ILayoutRestorer],
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    statusBar: IStatusBar | null,
    labShell: ILabShell | null,
    restorer: ILayoutRestorer | null
  ) => {
    const poller = new Poller();
    const oom = new OOMWatch(tracker);
    poller.changed.connect((_, records) => oom.check(records));

    // The status bar follows the current notebook; without one (Notebook 7), each
    // notebook's toolbar carries its own item.
    if (statusBar) {
      const status = new KernelStatus();
      const update = () => status.display(recordFor(poller.records, kernelIdOf(tracker.currentWidget)));
      poller.changed.connect(update);
      tracker.currentChanged.connect(update);
      statusBar.registerStatusItem('nbcontainers-lab:status', {
        item: status,
        align: 'left',
        rank: 4
      });
    } else {
      tracker.widgetAdded.connect((_, panel) => {
        const status = new KernelStatus();
        const update = () => status.display(recordFor(poller.records, kernelIdOf(panel)));
        poller.changed.connect(update);
        panel.disposed.connect(() => poller.changed.disconnect(update));
        panel.toolbar.insertItem(20, 'nbcontainers-status', status);
      });
    }

    const panel = new KernelsPanel(poller);
    panel.title.icon = kernelIcon;
    app.shell.add(panel, 'left', { rank: 600 });
    if (restorer) {
      restorer.add(panel, 'nbcontainers-kernels');
    }
    void labShell; // the panel goes to the left area in both shells
    poller.start();
  }
};

export default plugin;
