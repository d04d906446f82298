import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  type NextEdit,
  isGhostText,
  nextLineLength,
  nextWordLength,
  parseNextEdits,
  previewText,
  serverLaunch,
  serverSettings,
} from '../edits';

function edit(line: number, start: number, end: number, newText: string): NextEdit {
  return {
    id: 'r1',
    textDocument: { uri: 'file:///w/client.py', version: 3 },
    range: { start: { line, character: start }, end: { line, character: end } },
    newText,
    explanation: 'repeats your edit',
    score: 0.9,
  };
}

test('partial accept by word walks ", timeout=5" in four steps', () => {
  const steps: string[] = [];
  let rest = ', timeout=5';
  while (rest.length > 0) {
    const n = nextWordLength(rest);
    assert.ok(n > 0);
    steps.push(rest.slice(0, n));
    rest = rest.slice(n);
  }
  assert.deepEqual(steps, [',', ' timeout', '=', '5']);
  assert.equal(nextWordLength('   '), 3);
  assert.equal(nextWordLength(''), 0);
});

test('partial accept by line keeps the newline with its line', () => {
  assert.equal(nextLineLength('a = 1\nb = 2\n'), 6);
  assert.equal(nextLineLength('no newline'), 10);
});

test('ghost text: the edits the server shows at the cursor, not elsewhere', () => {
  const line = '    return fetch(f"/x/{id}", t)';
  // Elsewhere in the file: a diff preview, not ghost text.
  assert.equal(isGhostText(edit(12, 27, 27, ', timeout=5'), { line: 8, character: 5 }, line), false);
  // After the cursor on its line: ghost text.
  assert.equal(isGhostText(edit(8, 27, 27, ', timeout=5'), { line: 8, character: 4 }, line), true);
  // Before the cursor, extending what is typed: ghost text.
  assert.equal(isGhostText(edit(8, 27, 30, ', timeout=5'), { line: 8, character: 28 }, line), true);
  // Before the cursor, not extending it: no ghost text can show it.
  assert.equal(isGhostText(edit(8, 27, 30, 'xyz'), { line: 8, character: 29 }, line), false);
});

test('nextEdits answers are checked field by field', () => {
  const good = edit(1, 0, 0, 'x');
  assert.deepEqual(parseNextEdits({ edits: [good, { id: 3 }, null] }), [good]);
  assert.deepEqual(parseNextEdits({ edits: [{ ...good, textDocument: { uri: 'u', version: null } }] }).length, 1);
  assert.deepEqual(parseNextEdits(null), []);
  assert.deepEqual(parseNextEdits({ edits: 'no' }), []);
});

test('preview text is one line and keeps its leading spaces', () => {
  assert.equal(previewText('a\nb'), 'a ⏎ b');
  assert.equal(previewText('  x'), '\u00a0\u00a0x');
  assert.equal(previewText('y'.repeat(200), 10).length, 10);
});

test('settings: the server gets only its own keys, the client ones stay here', () => {
  const sent = serverSettings({
    enabled: false,
    minScore: 0.5,
    debounceMs: 200,
    maxSuggestions: 3,
    serverSettings: { maxContextFiles: 7, minScore: 0.1 },
  });
  assert.deepEqual(sent, {
    maxContextFiles: 7,
    enabled: false,
    minScore: 0.5,
    debounceMs: 200,
    maxSuggestions: 3,
  });
});

test('server launch: command, then interpreter, then ripple on PATH', () => {
  assert.deepEqual(serverLaunch(['/opt/r', 'serve'], '/usr/bin/python3', ''), {
    command: '/opt/r',
    args: ['serve'],
  });
  assert.deepEqual(serverLaunch([], '/v/bin/python', '/m'), {
    command: '/v/bin/python',
    args: ['-m', 'ripple.server.cli', 'serve', '--models', '/m'],
    python: '/v/bin/python',
  });
  assert.deepEqual(serverLaunch([''], ' ', ''), { command: 'ripple', args: ['serve'] });
});
