/**
 * Pure helpers on suggested edits (no `vscode` import, so `node --test` runs them).
 *
 * Positions here are LSP positions: a line and a UTF-16 character, which is also what a
 * JavaScript string index counts.
 */

export interface Position {
  line: number;
  character: number;
}

export interface Range {
  start: Position;
  end: Position;
}

/** One edit of `ripple/nextEdits` (see server/engine.py, `NextEdit.to_json`). */
export interface NextEdit {
  id: string;
  textDocument: { uri: string; version: number | null };
  range: Range;
  newText: string;
  explanation: string;
  score: number;
}

export interface NextEditsResult {
  edits: NextEdit[];
}

/** A `ripple/nextEdits` answer, checked field by field; malformed edits are dropped. */
export function parseNextEdits(value: unknown): NextEdit[] {
  if (typeof value !== 'object' || value === null) {
    return [];
  }
  const edits = (value as { edits?: unknown }).edits;
  if (!Array.isArray(edits)) {
    return [];
  }
  return edits.filter(isNextEdit);
}

function isPosition(value: unknown): value is Position {
  const p = value as Position;
  return (
    typeof p === 'object' && p !== null && Number.isInteger(p.line) && Number.isInteger(p.character)
  );
}

function isNextEdit(value: unknown): value is NextEdit {
  const e = value as NextEdit;
  return (
    typeof e === 'object' &&
    e !== null &&
    typeof e.id === 'string' &&
    typeof e.newText === 'string' &&
    typeof e.textDocument === 'object' &&
    e.textDocument !== null &&
    typeof e.textDocument.uri === 'string' &&
    (e.textDocument.version === null || Number.isInteger(e.textDocument.version)) &&
    typeof e.range === 'object' &&
    e.range !== null &&
    isPosition(e.range.start) &&
    isPosition(e.range.end)
  );
}

/**
 * Whether the server's inline completion would show `edit` as ghost text at `cursor`
 * (the rule of `_inline_item` in server/lsp.py): the edit starts on the cursor's line,
 * and either after the cursor or with new text that extends what is typed before it.
 * Such an edit is left to VS Code's ghost text and gets no diff preview of its own.
 */
export function isGhostText(edit: NextEdit, cursor: Position, lineText: string): boolean {
  const { start } = edit.range;
  if (start.line !== cursor.line) {
    return false;
  }
  if (cursor.character < start.character) {
    return true;
  }
  return edit.newText.startsWith(lineText.slice(start.character, cursor.character));
}

/**
 * How many characters of `text` a "next word" partial accept takes: leading white space,
 * then one run of word characters or one run of other non-space characters
 * (`, timeout=5` goes `,` / ` timeout` / `=` / `5`).
 */
export function nextWordLength(text: string): number {
  const match = /^\s*(?:[\p{L}\p{N}_]+|[^\p{L}\p{N}_\s]+)/u.exec(text);
  return match ? match[0].length : text.length;
}

/** How many characters of `text` a "next line" partial accept takes: through the first newline. */
export function nextLineLength(text: string): number {
  const newline = text.indexOf('\n');
  return newline < 0 ? text.length : newline + 1;
}

/** The new text as one line for an inline preview (newlines shown as ⏎), shortened. */
export function previewText(text: string, max = 120): string {
  let flat = text.replace(/\r?\n/g, ' ⏎ ').replace(/\t/g, '    ');
  if (flat.length > max) {
    flat = flat.slice(0, max - 1) + '…';
  }
  // A decoration's contentText collapses leading spaces; keep them visible.
  return flat.replace(/^ +/, (spaces) => '\u00a0'.repeat(spaces.length));
}

/** Whether `pos` lies on the lines of `range` (where Tab accepts rather than jumps). */
export function onRangeLines(range: Range, pos: Position): boolean {
  return pos.line >= range.start.line && pos.line <= range.end.line;
}

/** The settings the server understands (server/config.py), from the extension's settings. */
export interface ClientSettings {
  enabled: boolean;
  minScore: number;
  debounceMs: number;
  maxSuggestions: number;
  serverSettings: Record<string, unknown>;
}

export function serverSettings(settings: ClientSettings): Record<string, unknown> {
  return {
    ...settings.serverSettings,
    enabled: settings.enabled,
    minScore: settings.minScore,
    debounceMs: settings.debounceMs,
    maxSuggestions: settings.maxSuggestions,
  };
}

/** How to start the server: an explicit command, a Python interpreter, or `ripple` on PATH. */
export interface ServerLaunch {
  command: string;
  args: string[];
  /** The interpreter to check for the ripple package, when the server runs from one. */
  python?: string;
}

export function serverLaunch(
  serverCommand: readonly string[],
  pythonPath: string,
  modelsDir: string,
): ServerLaunch {
  const models = modelsDir.trim() ? ['--models', modelsDir.trim()] : [];
  const command = serverCommand.filter((part) => part.length > 0);
  if (command.length > 0) {
    return { command: command[0], args: [...command.slice(1), ...models] };
  }
  if (pythonPath.trim()) {
    const python = pythonPath.trim();
    return { command: python, args: ['-m', 'ripple.server.cli', 'serve', ...models], python };
  }
  return { command: 'ripple', args: ['serve', ...models] };
}
