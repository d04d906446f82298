/**
 * Next edits away from the cursor: asked for after each burst of typing
 * (`ripple/nextEdits`), shown as a diff preview at their target with a gutter marker;
 * Tab jumps to the edit, Tab again accepts it, Esc dismisses it.
 *
 * Edits at the cursor are VS Code's ghost text (the server's inline completions, wired
 * by the language client); this controller leaves those alone.
 */

import * as vscode from 'vscode';
import type { LanguageClient } from 'vscode-languageclient/node';
import {
  type NextEdit,
  isGhostText,
  nextLineLength,
  nextWordLength,
  onRangeLines,
  parseNextEdits,
  previewText,
} from './edits';

export const NEXT_EDITS = 'ripple/nextEdits';
export const DID_SHOW = 'ripple/didShowEdit';
export const DID_ACCEPT = 'ripple/didAcceptEdit';
export const DID_REJECT = 'ripple/didRejectEdit';

/** A suggestion as this controller tracks it (ranges move with partial accepts). */
interface Pending {
  edit: NextEdit;
  uri: vscode.Uri;
  range: vscode.Range;
  newText: string;
  /** The document version the range is for; null for a file that is not open. */
  version: number | null;
  /** Characters of the new text accepted so far by partial accepts. */
  accepted: number;
}

export interface SuggestionEvents {
  /** A `ripple/nextEdits` round trip finished, in milliseconds. */
  latency(ms: number): void;
  /** The pending suggestions changed (count, and the file of the current one). */
  changed(count: number, current: vscode.Uri | undefined): void;
}

export interface SuggestionOptions {
  enabled(): boolean;
  debounceMs(): number;
  collapsed(): boolean;
  selected(document: vscode.TextDocument): boolean;
}

export class SuggestionController implements vscode.Disposable {
  private pending: Pending[] = [];
  private current = 0;
  private atSuggestion = false;
  private shown = new Set<string>();
  private timer: ReturnType<typeof setTimeout> | undefined;
  private inFlight: vscode.CancellationTokenSource | undefined;
  /** Set while this controller applies an edit, so its own change is not the user's. */
  private applying = false;
  private queue: Promise<void> = Promise.resolve();
  private readonly disposables: vscode.Disposable[] = [];
  private readonly gutter: vscode.TextEditorDecorationType;
  private readonly removed: vscode.TextEditorDecorationType;
  private readonly inserted: vscode.TextEditorDecorationType;

  constructor(
    private client: LanguageClient | undefined,
    private readonly options: SuggestionOptions,
    private readonly events: SuggestionEvents,
    media: vscode.Uri,
  ) {
    this.gutter = vscode.window.createTextEditorDecorationType({
      gutterIconPath: vscode.Uri.joinPath(media, 'suggestion.svg'),
      gutterIconSize: 'contain',
      overviewRulerColor: new vscode.ThemeColor('editorOverviewRuler.addedForeground'),
      overviewRulerLane: vscode.OverviewRulerLane.Right,
      isWholeLine: true,
      backgroundColor: 'rgba(63, 185, 80, 0.06)',
    });
    this.removed = vscode.window.createTextEditorDecorationType({
      backgroundColor: new vscode.ThemeColor('diffEditor.removedTextBackground'),
      textDecoration: 'line-through',
      border: '1px solid rgba(248, 81, 73, 0.6)',
    });
    this.inserted = vscode.window.createTextEditorDecorationType({
      after: {
        backgroundColor: new vscode.ThemeColor('diffEditor.insertedTextBackground'),
        border: '1px solid rgba(63, 185, 80, 0.8)',
        color: new vscode.ThemeColor('editor.foreground'),
        margin: '0 0 0 1px',
      },
      rangeBehavior: vscode.DecorationRangeBehavior.ClosedClosed,
    });
    this.disposables.push(
      this.gutter,
      this.removed,
      this.inserted,
      vscode.workspace.onDidChangeTextDocument((e) => this.onDidChange(e)),
      vscode.workspace.onDidCloseTextDocument((doc) => this.onDidClose(doc)),
      vscode.window.onDidChangeVisibleTextEditors(() => this.render()),
      vscode.window.onDidChangeActiveTextEditor(() => this.updateContext()),
      vscode.window.onDidChangeTextEditorSelection((e) => {
        if (e.textEditor === vscode.window.activeTextEditor) {
          this.updateContext();
        }
      }),
    );
    void this.setContext();
  }

  /** A new (or restarted) language client; whatever was pending belonged to the old one. */
  setClient(client: LanguageClient | undefined): void {
    this.client = client;
    this.clear();
  }

  get currentEdit(): NextEdit | undefined {
    return this.pending[this.current]?.edit;
  }

  get count(): number {
    return this.pending.length;
  }

  dispose(): void {
    this.cancel();
    for (const d of this.disposables) {
      d.dispose();
    }
    void vscode.commands.executeCommand('setContext', 'ripple.hasSuggestion', false);
    void vscode.commands.executeCommand('setContext', 'ripple.atSuggestion', false);
  }

  // -- requesting --------------------------------------------------------------------------

  private onDidChange(e: vscode.TextDocumentChangeEvent): void {
    if (this.applying || e.contentChanges.length === 0) {
      return;
    }
    // Whatever was suggested for this document was computed for a text that is gone.
    if (this.pending.length > 0) {
      const uri = e.document.uri.toString();
      if (this.pending.some((p) => p.uri.toString() === uri)) {
        this.clear();
      }
    }
    if (this.options.enabled() && this.options.selected(e.document)) {
      this.schedule(e.document);
    }
  }

  private onDidClose(doc: vscode.TextDocument): void {
    const uri = doc.uri.toString();
    if (this.pending.some((p) => p.uri.toString() === uri && p.version !== null)) {
      this.clear();
    }
  }

  /** Ask for the next edits of `document` once typing has paused for the debounce. */
  schedule(document: vscode.TextDocument): void {
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
    }
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.request(document);
    }, Math.max(0, this.options.debounceMs()));
  }

  private cancel(): void {
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    this.inFlight?.cancel();
    this.inFlight?.dispose();
    this.inFlight = undefined;
  }

  async request(document: vscode.TextDocument): Promise<void> {
    const client = this.client;
    if (client === undefined || !client.isRunning() || !this.options.enabled()) {
      return;
    }
    this.inFlight?.cancel();
    const source = (this.inFlight = new vscode.CancellationTokenSource());
    const editor = vscode.window.visibleTextEditors.find((e) => e.document === document);
    const cursor = editor?.selection.active ?? new vscode.Position(0, 0);
    const version = document.version;
    const started = performance.now();
    let answer: unknown;
    try {
      answer = await client.sendRequest(
        NEXT_EDITS,
        {
          textDocument: { uri: client.code2ProtocolConverter.asUri(document.uri), version },
          position: { line: cursor.line, character: cursor.character },
        },
        source.token,
      );
    } catch (err) {
      if (!source.token.isCancellationRequested) {
        client.warn(`ripple/nextEdits failed: ${String(err)}`);
      }
      return;
    } finally {
      if (this.inFlight === source) {
        this.inFlight = undefined;
      }
      source.dispose();
    }
    this.events.latency(performance.now() - started);
    if (source.token.isCancellationRequested || document.version !== version || this.applying) {
      return; // the text moved on while the server was answering
    }
    this.show(parseNextEdits(answer), document, cursor);
  }

  private show(edits: NextEdit[], document: vscode.TextDocument, cursor: vscode.Position): void {
    const client = this.client;
    if (client === undefined) {
      return;
    }
    const ghost = vscode.workspace
      .getConfiguration('editor', document)
      .get<boolean>('inlineSuggest.enabled', true);
    const here = document.uri.toString();
    const lineText = document.lineAt(Math.min(cursor.line, document.lineCount - 1)).text;
    const pending: Pending[] = [];
    for (const edit of edits) {
      const uri = client.protocol2CodeConverter.asUri(edit.textDocument.uri);
      const open = vscode.workspace.textDocuments.find((d) => d.uri.toString() === uri.toString());
      if (edit.textDocument.version !== null && open?.version !== edit.textDocument.version) {
        continue; // computed for another version of that document
      }
      if (ghost && uri.toString() === here && isGhostText(edit, cursor, lineText)) {
        continue; // VS Code shows it at the cursor as ghost text
      }
      pending.push({
        edit,
        uri,
        range: client.protocol2CodeConverter.asRange(edit.range),
        newText: edit.newText,
        version: open ? open.version : null,
        accepted: 0,
      });
    }
    this.pending = pending;
    this.current = 0;
    this.atSuggestion = false;
    this.render();
  }

  // -- showing -----------------------------------------------------------------------------

  clear(): void {
    this.cancel();
    if (this.pending.length === 0) {
      return;
    }
    this.pending = [];
    this.current = 0;
    this.atSuggestion = false;
    this.render();
  }

  /** Draw the decorations again (after a change of the collapsed setting). */
  refresh(): void {
    this.render();
  }

  private render(): void {
    const current = this.pending[this.current];
    // The context keys first: once a suggestion is visible, Tab and Esc must already work.
    this.updateContext(false);
    for (const editor of vscode.window.visibleTextEditors) {
      const uri = editor.document.uri.toString();
      const markers: vscode.DecorationOptions[] = [];
      const removed: vscode.DecorationOptions[] = [];
      const inserted: vscode.DecorationOptions[] = [];
      for (const p of this.pending) {
        if (p.uri.toString() !== uri) {
          continue;
        }
        const hover = this.hover(p);
        markers.push({ range: new vscode.Range(p.range.start, p.range.start), hoverMessage: hover });
        const expanded = !this.options.collapsed() || (p === current && this.atSuggestion);
        if (p !== current || !expanded) {
          continue;
        }
        if (!p.range.isEmpty) {
          removed.push({ range: p.range, hoverMessage: hover });
        }
        inserted.push({
          range: new vscode.Range(p.range.end, p.range.end),
          hoverMessage: hover,
          renderOptions: { after: { contentText: previewText(p.newText) } },
        });
      }
      editor.setDecorations(this.gutter, markers);
      editor.setDecorations(this.removed, removed);
      editor.setDecorations(this.inserted, inserted);
    }
    if (current !== undefined && !this.shown.has(current.edit.id)) {
      this.shown.add(current.edit.id);
      this.notify(DID_SHOW, { id: current.edit.id });
    }
    this.events.changed(this.pending.length, current?.uri);
  }

  private hover(p: Pending): vscode.MarkdownString {
    const md = new vscode.MarkdownString(undefined, true);
    md.appendMarkdown('**ripple** suggests');
    if (p.edit.explanation) {
      md.appendMarkdown(`: ${escapeMarkdown(p.edit.explanation)}`);
    }
    md.appendMarkdown(` (score ${p.edit.score.toFixed(2)})\n`);
    md.appendCodeblock(p.newText || '(delete)', 'text');
    md.appendMarkdown('\n`Tab` jump / accept · `Esc` dismiss · `Alt+]` next suggestion');
    return md;
  }

  /** Whether the cursor is at the current suggestion; the context keys follow. */
  private updateContext(redraw = true): void {
    const current = this.pending[this.current];
    const editor = vscode.window.activeTextEditor;
    const wasAt = this.atSuggestion;
    this.atSuggestion =
      current !== undefined &&
      editor !== undefined &&
      editor.document.uri.toString() === current.uri.toString() &&
      onRangeLines(current.range, editor.selection.active);
    void this.setContext();
    if (redraw && wasAt !== this.atSuggestion && this.options.collapsed()) {
      this.render();
    }
  }

  private async setContext(): Promise<void> {
    const has = this.pending.length > 0 && this.options.enabled();
    await Promise.all([
      vscode.commands.executeCommand('setContext', 'ripple.hasSuggestion', has),
      vscode.commands.executeCommand('setContext', 'ripple.atSuggestion', has && this.atSuggestion),
    ]);
  }

  private notify(method: string, params: object): void {
    const client = this.client;
    if (client !== undefined && client.isRunning()) {
      void client.sendNotification(method, params).catch(() => undefined);
    }
  }

  // -- commands ----------------------------------------------------------------------------

  /**
   * Run the commands one after the other: a key held down (Ctrl+Right, Ctrl+Right) must
   * not build its edit before the previous one has been applied.
   */
  private serial(run: () => Promise<void>): Promise<void> {
    const next = this.queue.then(run, run);
    this.queue = next.catch(() => undefined);
    return next;
  }

  /** Tab: jump to the current suggestion, or accept it when the cursor is already there. */
  acceptOrJump(): Promise<void> {
    return this.serial(async () => {
      const current = this.pending[this.current];
      if (current === undefined) {
        return;
      }
      if (!this.atSuggestion) {
        await this.jump(current);
        return;
      }
      await this.acceptPart(current, current.newText.length);
    });
  }

  /** Accept the next word (or line) of the current suggestion. */
  acceptWord(): Promise<void> {
    return this.serial(async () => {
      const current = this.pending[this.current];
      if (current !== undefined) {
        await this.acceptPart(current, nextWordLength(current.newText));
      }
    });
  }

  acceptLine(): Promise<void> {
    return this.serial(async () => {
      const current = this.pending[this.current];
      if (current !== undefined) {
        await this.acceptPart(current, nextLineLength(current.newText));
      }
    });
  }

  /** Esc: dismiss the suggestions; the shown one is reported as rejected. */
  reject(): Promise<void> {
    return this.serial(() => {
      const current = this.pending[this.current];
      if (current !== undefined) {
        this.notify(DID_REJECT, { id: current.edit.id });
        this.clear();
      }
      return Promise.resolve();
    });
  }

  /** Show the next of the ranked suggestions. */
  next(): Promise<void> {
    return this.serial(() => {
      if (this.pending.length > 0) {
        this.current = (this.current + 1) % this.pending.length;
        this.atSuggestion = false;
        this.render();
        const current = this.pending[this.current];
        const editor = vscode.window.visibleTextEditors.find(
          (e) => e.document.uri.toString() === current.uri.toString(),
        );
        editor?.revealRange(current.range, vscode.TextEditorRevealType.InCenterIfOutsideViewport);
      }
      return Promise.resolve();
    });
  }

  private async jump(p: Pending): Promise<void> {
    const editor = await vscode.window.showTextDocument(p.uri, { preserveFocus: false });
    if (p.version !== null && editor.document.version !== p.version) {
      this.clear();
      return;
    }
    if (p.version === null) {
      p.version = editor.document.version; // the file is open now
    }
    // Tab accepts once the cursor is there: set the context key before moving it.
    this.atSuggestion = true;
    await this.setContext();
    editor.selection = new vscode.Selection(p.range.start, p.range.start);
    editor.revealRange(p.range, vscode.TextEditorRevealType.InCenterIfOutsideViewport);
    this.render();
  }

  /**
   * Apply the first `length` characters of the suggestion's new text. All of it replaces
   * the range; a part is inserted at the range's start and the rest stays suggested.
   */
  private async acceptPart(p: Pending, length: number): Promise<void> {
    const document = await vscode.workspace.openTextDocument(p.uri);
    if (p.version !== null && document.version !== p.version) {
      this.clear();
      return;
    }
    const whole = length >= p.newText.length;
    const part = p.newText.slice(0, length);
    const edit = new vscode.WorkspaceEdit();
    if (whole) {
      edit.replace(p.uri, p.range, p.newText);
    } else {
      edit.insert(p.uri, p.range.start, part);
    }
    const startOffset = document.offsetAt(p.range.start);
    const endOffset = document.offsetAt(p.range.end);
    // Where the other suggestions in this file are, as offsets into the text before the edit.
    const uri = p.uri.toString();
    const others = this.pending
      .filter((o) => o !== p && o.uri.toString() === uri && o.version !== null)
      .map((o) => ({ o, s: document.offsetAt(o.range.start), e: document.offsetAt(o.range.end) }));
    this.cancel();
    this.applying = true;
    let ok = false;
    try {
      ok = await vscode.workspace.applyEdit(edit);
    } finally {
      this.applying = false;
    }
    if (!ok) {
      this.clear();
      return;
    }
    const accepted = p.accepted + part.length;
    const editor = vscode.window.visibleTextEditors.find((e) => e.document === document);
    if (whole) {
      this.notify(
        DID_ACCEPT,
        p.accepted > 0 ? { id: p.edit.id, acceptedLength: accepted } : { id: p.edit.id },
      );
      const end = document.positionAt(startOffset + p.newText.length);
      if (editor !== undefined) {
        editor.selection = new vscode.Selection(end, end);
      }
      this.pending = [];
      this.current = 0;
      this.atSuggestion = false;
      this.render();
      // The accepted edit is the newest one: ask what comes after it.
      if (this.options.enabled() && this.options.selected(document)) {
        this.schedule(document);
      }
      return;
    }
    this.notify(DID_ACCEPT, { id: p.edit.id, acceptedLength: accepted });
    // The other suggestions in this file move with the inserted text.
    const shift = (offset: number) => (offset >= startOffset ? offset + part.length : offset);
    for (const { o, s, e } of others) {
      o.range = new vscode.Range(document.positionAt(shift(s)), document.positionAt(shift(e)));
      o.version = document.version;
    }
    const start = document.positionAt(startOffset + part.length);
    p.range = new vscode.Range(start, document.positionAt(endOffset + part.length));
    p.newText = p.newText.slice(part.length);
    p.version = document.version;
    p.accepted = accepted;
    if (editor !== undefined) {
      editor.selection = new vscode.Selection(start, start);
    }
    this.updateContext();
    this.render();
  }
}

function escapeMarkdown(text: string): string {
  return text.replace(/[\\`*_{}[\]()#+\-.!|<>]/g, (c) => `\\${c}`);
}
