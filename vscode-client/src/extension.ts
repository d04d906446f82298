/**
 * ripple for VS Code: starts `ripple serve` over stdio and shows its suggestions.
 *
 * - At the cursor: the server's `textDocument/inlineCompletion` items, as VS Code's ghost
 *   text (wired by vscode-languageclient; accepting one runs the server's
 *   `ripple.acceptEdit` command, which reports the acceptance).
 * - Elsewhere: `ripple/nextEdits`, shown by the {@link SuggestionController} as a diff
 *   preview with a gutter marker; Tab jumps to it, Tab again accepts, Esc dismisses.
 * - A status bar item (on/off, the models the server loaded, the last answer's latency)
 *   and the settings, passed to the server as `initializationOptions` and
 *   `workspace/didChangeConfiguration`.
 */

import { execFile } from 'node:child_process';
import { constants as fsConstants } from 'node:fs';
import { access } from 'node:fs/promises';
import * as path from 'node:path';
import * as vscode from 'vscode';
import {
  type DocumentSelector,
  type Executable,
  LanguageClient,
  type LanguageClientOptions,
  State,
} from 'vscode-languageclient/node';
import { type ClientSettings, type ServerLaunch, serverLaunch, serverSettings } from './edits';
import { DID_SHOW, SuggestionController } from './suggestions';

const STATUS = 'ripple/status';
const INSTALL_HINT = 'pip install ripple-edits';

/** Settings that need a new server process when they change. */
const RESTART_SETTINGS = [
  'ripple.pythonPath',
  'ripple.serverCommand',
  'ripple.modelsDir',
  'ripple.languages',
];
/** Settings the running server takes through `workspace/didChangeConfiguration`. */
const SERVER_SETTINGS = [
  'ripple.enabled',
  'ripple.minScore',
  'ripple.debounceMs',
  'ripple.maxSuggestions',
  'ripple.serverSettings',
];

function config(): vscode.WorkspaceConfiguration {
  return vscode.workspace.getConfiguration('ripple');
}

function clientSettings(): ClientSettings {
  const c = config();
  return {
    enabled: c.get<boolean>('enabled', true),
    minScore: c.get<number>('minScore', 0),
    debounceMs: c.get<number>('debounceMs', 75),
    maxSuggestions: c.get<number>('maxSuggestions', 5),
    serverSettings: c.get<Record<string, unknown>>('serverSettings', {}) ?? {},
  };
}

function languages(): string[] {
  return config().get<string[]>('languages', ['python']);
}

function documentSelector(): DocumentSelector {
  const ids = languages();
  if (ids.includes('*')) {
    return [{ scheme: 'file' }, { scheme: 'untitled' }];
  }
  return ids.flatMap((language) => [
    { scheme: 'file', language },
    { scheme: 'untitled', language },
  ]);
}

function selected(document: vscode.TextDocument): boolean {
  if (document.uri.scheme !== 'file' && document.uri.scheme !== 'untitled') {
    return false;
  }
  const ids = languages();
  return ids.includes('*') || ids.includes(document.languageId);
}

/** The status bar item: on/off, models, latency, problems. */
class StatusItem implements vscode.Disposable {
  private readonly item = vscode.window.createStatusBarItem(
    'ripple.status',
    vscode.StatusBarAlignment.Right,
    100,
  );
  enabled = true;
  running = false;
  problem: string | undefined;
  models: string[] | undefined;
  indexedFiles: number | undefined;
  latencyMs: number | undefined;
  suggestions = 0;

  constructor() {
    this.item.name = 'ripple';
    this.item.command = 'ripple.menu';
    this.update();
    this.item.show();
  }

  update(): void {
    const item = this.item;
    if (this.problem !== undefined) {
      item.text = '$(warning) ripple';
      item.backgroundColor = new vscode.ThemeColor('statusBarItem.warningBackground');
    } else if (!this.enabled) {
      item.text = '$(circle-slash) ripple off';
      item.backgroundColor = undefined;
    } else {
      const latency = this.latencyMs === undefined ? '' : ` · ${Math.round(this.latencyMs)} ms`;
      const count = this.suggestions > 0 ? ` · ${this.suggestions} pending` : '';
      item.text = `${this.running ? '$(sparkle)' : '$(loading~spin)'} ripple${count}${latency}`;
      item.backgroundColor = undefined;
    }
    // A stable label for screen readers (and the end-to-end test): state and count.
    const state =
      this.problem !== undefined
        ? 'problem'
        : !this.enabled
          ? 'off'
          : this.running
            ? 'running'
            : 'starting';
    item.accessibilityInformation = {
      label: `ripple status: ${state}; ${this.suggestions} suggestions`,
    };
    const md = new vscode.MarkdownString();
    md.appendMarkdown(`**ripple** ${this.enabled ? 'on' : 'off'}`);
    if (this.problem !== undefined) {
      md.appendMarkdown(`\n\n$(warning) ${this.problem}`);
    } else {
      md.appendMarkdown(this.running ? '' : ' (starting)');
      const models = this.models === undefined ? '…' : this.models.length ? this.models.join(', ') : 'rules only';
      md.appendMarkdown(`\n\nmodels: ${models}`);
      if (this.indexedFiles !== undefined) {
        md.appendMarkdown(`\n\nindexed files: ${this.indexedFiles}`);
      }
      if (this.latencyMs !== undefined) {
        md.appendMarkdown(`\n\nlast answer: ${this.latencyMs.toFixed(1)} ms`);
      }
      md.appendMarkdown(`\n\npending suggestions: ${this.suggestions}`);
    }
    md.appendMarkdown('\n\nClick for ripple\'s commands.');
    md.supportThemeIcons = true;
    item.tooltip = md;
  }

  dispose(): void {
    this.item.dispose();
  }
}

/** Run `python -c "import ripple.server.cli"`: undefined when it works, else the reason. */
function checkPython(python: string, cwd: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    execFile(
      python,
      ['-c', 'import ripple.server.cli'],
      { cwd, timeout: 60_000, windowsHide: true },
      (error, _stdout, stderr) => {
        if (error === null) {
          resolve(undefined);
        } else if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
          resolve(
            `ripple.pythonPath is "${python}", which does not exist. Set ripple.pythonPath to the ` +
              `Python interpreter that has ripple (${INSTALL_HINT}).`,
          );
        } else {
          const detail = stderr.trim().split('\n').pop() ?? '';
          resolve(
            `ripple is not installed for ${python} (${detail || error.message}). Install it with ` +
              `"${python} -m ${INSTALL_HINT}", or set ripple.pythonPath to a Python that has it.`,
          );
        }
      },
    );
  });
}

async function isExecutable(file: string): Promise<boolean> {
  try {
    await access(file, process.platform === 'win32' ? fsConstants.F_OK : fsConstants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Find `command` the way a shell would (an explicit path, or a search of PATH). */
async function findCommand(command: string): Promise<string | undefined> {
  if (command.includes('/') || command.includes('\\')) {
    return (await isExecutable(command)) ? command : undefined;
  }
  const exts = process.platform === 'win32' ? ['.exe', '.cmd', '.bat', ''] : [''];
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    for (const ext of exts) {
      const candidate = path.join(dir, command + ext);
      if (dir && (await isExecutable(candidate))) {
        return candidate;
      }
    }
  }
  return undefined;
}

async function checkLaunch(launch: ServerLaunch, cwd: string): Promise<string | undefined> {
  if (launch.python !== undefined) {
    return checkPython(launch.python, cwd);
  }
  if ((await findCommand(launch.command)) !== undefined) {
    return undefined;
  }
  if (launch.command === 'ripple') {
    return (
      `ripple is not installed: there is no "ripple" command on PATH. Install it with ` +
      `"${INSTALL_HINT}", or set ripple.pythonPath to the Python interpreter that has it.`
    );
  }
  return `ripple.serverCommand starts "${launch.command}", which was not found.`;
}

class Extension implements vscode.Disposable {
  private client: LanguageClient | undefined;
  private readonly output = vscode.window.createOutputChannel('ripple', { log: true });
  private readonly status = new StatusItem();
  private readonly suggestions: SuggestionController;
  private readonly disposables: vscode.Disposable[] = [];
  private starting: Promise<void> = Promise.resolve();

  constructor(private readonly context: vscode.ExtensionContext) {
    this.suggestions = new SuggestionController(
      undefined,
      {
        enabled: () => config().get<boolean>('enabled', true),
        debounceMs: () => config().get<number>('debounceMs', 75),
        collapsed: () => config().get<boolean>('collapsed', false),
        selected,
      },
      {
        latency: (ms) => {
          this.status.latencyMs = ms;
          this.status.update();
        },
        changed: (count) => {
          this.status.suggestions = count;
          this.status.update();
        },
      },
      vscode.Uri.joinPath(context.extensionUri, 'media'),
    );
    this.status.enabled = clientSettings().enabled;
    this.status.update();
    const command = (id: string, run: () => unknown): void => {
      this.disposables.push(vscode.commands.registerCommand(id, run));
    };
    command('ripple.toggle', () => this.toggle());
    command('ripple.accept', () => this.suggestions.acceptOrJump());
    command('ripple.acceptWord', () => this.suggestions.acceptWord());
    command('ripple.acceptLine', () => this.suggestions.acceptLine());
    command('ripple.reject', () => this.suggestions.reject());
    command('ripple.nextSuggestion', () => this.suggestions.next());
    command('ripple.showWhy', () => this.showWhy());
    command('ripple.showStatus', () => this.showStatus());
    command('ripple.restart', () => this.restart());
    command('ripple.menu', () => this.menu());
    this.disposables.push(
      this.output,
      this.status,
      this.suggestions,
      vscode.workspace.onDidChangeConfiguration((e) => this.onConfiguration(e)),
      vscode.workspace.onDidGrantWorkspaceTrust(() => this.restart()),
    );
  }

  dispose(): void {
    for (const d of this.disposables) {
      d.dispose();
    }
  }

  /** Queue `step` behind any start or stop in progress; a failure is shown, not thrown. */
  private enqueue(step: () => Promise<void>): Promise<void> {
    this.starting = this.starting.then(step).catch((err: unknown) => {
      this.fail(`the ripple extension failed: ${String(err)}`);
    });
    return this.starting;
  }

  start(): Promise<void> {
    return this.enqueue(() => this.startClient());
  }

  private async startClient(): Promise<void> {
    const c = config();
    const launch = serverLaunch(
      c.get<string[]>('serverCommand', []),
      c.get<string>('pythonPath', ''),
      c.get<string>('modelsDir', ''),
    );
    // Not the workspace folder: `python -m` would import a ripple/ folder found there.
    const cwd = this.context.extensionUri.fsPath;
    this.status.problem = undefined;
    this.status.running = false;
    this.status.update();
    const problem = await checkLaunch(launch, cwd);
    if (problem !== undefined) {
      this.fail(problem);
      return;
    }
    this.output.info(`starting ${[launch.command, ...launch.args].join(' ')}`);
    const server: Executable = {
      command: launch.command,
      args: launch.args,
      // No `transport`: with TransportKind.stdio the client would append `--stdio`.
      options: { cwd, env: { ...process.env, PYTHONUNBUFFERED: '1' } },
    };
    const options: LanguageClientOptions = {
      documentSelector: documentSelector(),
      initializationOptions: serverSettings(clientSettings()),
      outputChannel: this.output,
      middleware: {
        provideInlineCompletionItems: async (document, position, context, token, next) => {
          if (!config().get<boolean>('enabled', true)) {
            return undefined;
          }
          const result = await next(document, position, context, token);
          const items = Array.isArray(result) ? result : (result?.items ?? []);
          // VS Code shows the first item as ghost text (the others on Alt+]).
          const id: unknown = items[0]?.command?.arguments?.[0];
          if (typeof id === 'string' && this.client?.isRunning()) {
            void this.client.sendNotification(DID_SHOW, { id }).catch(() => undefined);
          }
          return result;
        },
      },
    };
    const client = new LanguageClient('ripple', 'ripple', server, options);
    client.onDidChangeState((e) => {
      if (this.client === client) {
        this.status.running = e.newState === State.Running;
        this.status.update();
      }
    });
    this.client = client;
    this.suggestions.setClient(client);
    try {
      await client.start();
    } catch (err) {
      this.fail(
        `the ripple server (${[launch.command, ...launch.args].join(' ')}) did not start: ` +
          `${String(err)}. Its output is in the "ripple" output; install ripple with ` +
          `"${INSTALL_HINT}", or set ripple.pythonPath or ripple.serverCommand.`,
      );
      return;
    }
    this.status.running = true;
    this.status.update();
    void this.refreshStatus(true);
  }

  private fail(problem: string): void {
    this.output.error(problem);
    this.status.problem = problem;
    this.status.running = false;
    this.status.update();
    void vscode.window
      .showErrorMessage(problem, 'Open Settings', 'Copy Install Command', 'Show Output')
      .then((choice) => {
        if (choice === 'Open Settings') {
          void vscode.commands.executeCommand('workbench.action.openSettings', 'ripple.pythonPath');
        } else if (choice === 'Copy Install Command') {
          const python = config().get<string>('pythonPath', '').trim();
          void vscode.env.clipboard.writeText(python ? `${python} -m ${INSTALL_HINT}` : INSTALL_HINT);
        } else if (choice === 'Show Output') {
          this.output.show();
        }
      });
  }

  private async stopClient(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    this.suggestions.setClient(undefined);
    if (client !== undefined) {
      try {
        await client.stop(5000);
      } catch (err) {
        this.output.warn(`stopping the server: ${String(err)}`);
      }
    }
  }

  async stop(): Promise<void> {
    await this.starting;
    await this.stopClient();
  }

  restart(): Promise<void> {
    return this.enqueue(async () => {
      await this.stopClient();
      await this.startClient();
    });
  }

  private async refreshStatus(waitForIndex = false): Promise<Record<string, unknown> | undefined> {
    const client = this.client;
    if (client === undefined || !client.isRunning()) {
      return undefined;
    }
    try {
      const status = await client.sendRequest<Record<string, unknown>>(STATUS, { waitForIndex });
      this.status.models = Array.isArray(status.models) ? status.models.map(String) : [];
      this.status.indexedFiles = typeof status.indexedFiles === 'number' ? status.indexedFiles : undefined;
      this.status.update();
      return status;
    } catch (err) {
      this.output.warn(`ripple/status failed: ${String(err)}`);
      return undefined;
    }
  }

  private onConfiguration(e: vscode.ConfigurationChangeEvent): void {
    if (RESTART_SETTINGS.some((s) => e.affectsConfiguration(s))) {
      void this.restart();
      return;
    }
    if (SERVER_SETTINGS.some((s) => e.affectsConfiguration(s))) {
      const settings = clientSettings();
      this.status.enabled = settings.enabled;
      this.status.update();
      if (!settings.enabled) {
        this.suggestions.clear();
      }
      const client = this.client;
      if (client?.isRunning()) {
        void client
          .sendNotification('workspace/didChangeConfiguration', {
            settings: { ripple: serverSettings(settings) },
          })
          .then(() => this.refreshStatus());
      }
    }
    if (e.affectsConfiguration('ripple.collapsed')) {
      this.suggestions.refresh();
    }
  }

  private async toggle(): Promise<void> {
    const c = config();
    const inspect = c.inspect<boolean>('enabled');
    const target =
      inspect?.workspaceFolderValue !== undefined
        ? vscode.ConfigurationTarget.WorkspaceFolder
        : inspect?.workspaceValue !== undefined
          ? vscode.ConfigurationTarget.Workspace
          : vscode.ConfigurationTarget.Global;
    await c.update('enabled', !c.get<boolean>('enabled', true), target);
  }

  private showWhy(): void {
    const edit = this.suggestions.currentEdit;
    if (edit === undefined) {
      void vscode.window.showInformationMessage('ripple has no suggestion pending.');
      return;
    }
    const line = edit.range.start.line + 1;
    const file = path.basename(vscode.Uri.parse(edit.textDocument.uri).fsPath);
    void vscode.window.showInformationMessage(
      `ripple suggests ${JSON.stringify(edit.newText)} at ${file}:${line}: ` +
        `${edit.explanation || 'no explanation given'} (score ${edit.score.toFixed(2)}).`,
    );
  }

  private async showStatus(): Promise<void> {
    const status = await this.refreshStatus();
    if (status === undefined) {
      void vscode.window.showWarningMessage(
        this.status.problem ?? 'The ripple server is not running.',
      );
      return;
    }
    this.output.info(`ripple/status: ${JSON.stringify(status, null, 2)}`);
    const models = this.status.models?.length ? this.status.models.join(', ') : 'rules only';
    const problems = Array.isArray(status.problems) ? status.problems.length : 0;
    const counts = (status.feedback ?? {}) as Record<string, number>;
    const feedback = ['shown', 'accepted', 'accepted_partly', 'rejected']
      .map((key) => `${key.replace('_', ' ')} ${counts[key] ?? 0}`)
      .join(', ');
    const choice = await vscode.window.showInformationMessage(
      `ripple ${typeof status.version === 'string' ? status.version : '?'}: models ${models}; ` +
        `${JSON.stringify(status.indexedFiles)} files indexed; ${problems} problem(s); ` +
        `debounce ${typeof status.debounceMs === 'number' ? Math.round(status.debounceMs) : '?'} ms; ` +
        `suggestions ${feedback}.`,
      'Show Output',
    );
    if (choice === 'Show Output') {
      this.output.show();
    }
  }

  private async menu(): Promise<void> {
    const enabled = config().get<boolean>('enabled', true);
    const items: (vscode.QuickPickItem & { command: string })[] = [
      { label: enabled ? '$(circle-slash) Turn suggestions off' : '$(sparkle) Turn suggestions on', command: 'ripple.toggle' },
      { label: '$(question) Why this suggestion?', command: 'ripple.showWhy' },
      { label: '$(arrow-right) Next suggestion', command: 'ripple.nextSuggestion' },
      { label: '$(info) Server status', command: 'ripple.showStatus' },
      { label: '$(debug-restart) Restart the server', command: 'ripple.restart' },
      { label: '$(gear) Settings', command: 'ripple.openSettings' },
    ];
    const pick = await vscode.window.showQuickPick(items, { placeHolder: 'ripple' });
    if (pick?.command === 'ripple.openSettings') {
      await vscode.commands.executeCommand('workbench.action.openSettings', '@ext:ripple.ripple-vscode');
    } else if (pick !== undefined) {
      await vscode.commands.executeCommand(pick.command);
    }
  }
}

/** Ghost text is how edits at the cursor show: offer to switch inline suggestions on. */
async function checkInlineSuggestions(): Promise<void> {
  const editor = vscode.workspace.getConfiguration('editor', { languageId: 'python' });
  if (editor.get<boolean>('inlineSuggest.enabled', true)) {
    return;
  }
  const choice = await vscode.window.showWarningMessage(
    'ripple shows the edit at the cursor as an inline suggestion, and inline suggestions are off ' +
      '(editor.inlineSuggest.enabled).',
    'Turn On',
  );
  if (choice === 'Turn On') {
    await vscode.workspace
      .getConfiguration('editor')
      .update('inlineSuggest.enabled', true, vscode.ConfigurationTarget.Global);
  }
}

let extension: Extension | undefined;

export function activate(context: vscode.ExtensionContext): void {
  extension = new Extension(context);
  context.subscriptions.push(extension);
  void checkInlineSuggestions();
  void extension.start();
}

export async function deactivate(): Promise<void> {
  await extension?.stop();
  extension = undefined;
}
