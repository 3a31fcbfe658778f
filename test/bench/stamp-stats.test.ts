/**
 * The bench's pure parts: the audio stamp round trip (bytes and base64), and the percentile, slope,
 * table and /proc parsing helpers on known inputs. The processes are covered by run.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { FRAME_BYTES, frameEnergy, silence, speechFrames, SPEECH_ENERGY_THRESHOLD } from '../../src/sim/portable/audio.js';
import { procCpuSeconds, procStatCores } from '../../bench/run.js';
import { metricSum } from '../../src/sim/prom-text.js';
import { readStamp, stampAgeUs, stampBase64Frame, STAMP_OFFSET, writeStamp } from '../../bench/stamp.js';
import { formatTable, percentile, quantiles, ratio, Samples, slope, svgLinePlot } from '../../bench/stats.js';

describe('audio stamp', () => {
  it('round-trips sequence and time through a frame', () => {
    const f = silence(FRAME_BYTES);
    writeStamp(f, 70_001, 123_456.789);
    const s = readStamp(f);
    expect(s).toEqual({ seq: 70_001 % 65_536, timeUs: 123_456_789 % 2 ** 28 });
    expect(stampAgeUs(s!, 123_458.289)).toBe(1500);
  });

  it('measures age across the 2^28 µs wrap', () => {
    const f = silence();
    const sendMs = 2 ** 28 / 1000 - 0.5; // 0.5 ms before the wrap
    writeStamp(f, 1, sendMs);
    expect(stampAgeUs(readStamp(f)!, sendMs + 2)).toBe(2000);
  });

  it('keeps a stamped silence frame silent and a speech frame loud, and leaves the text marker intact', () => {
    const quiet = silence();
    writeStamp(quiet, 65_535, 99_999_999);
    expect(frameEnergy(quiet)).toBeLessThan(10);
    const speech = speechFrames('hello there')[0]!;
    const before = speech.slice(0, STAMP_OFFSET);
    writeStamp(speech, 5, 1);
    expect(frameEnergy(speech)).toBeGreaterThan(SPEECH_ENERGY_THRESHOLD);
    expect(speech.slice(0, STAMP_OFFSET)).toEqual(before);
  });

  it('does not read tone or silence as a stamp', () => {
    expect(readStamp(silence())).toBeUndefined();
    for (const f of speechFrames('x', { minFrames: 20 })) expect(readStamp(f)).toBeUndefined();
    expect(readStamp(new Uint8Array(100))).toBeUndefined();
  });

  it('stamps a base64 frame exactly as stamping its bytes', () => {
    const frame = speechFrames('base64 check')[0]!;
    const b64 = Buffer.from(frame).toString('base64');
    const stamped = stampBase64Frame(b64, 42, 777.5);
    expect(stamped).toHaveLength(b64.length);
    const expected = frame.slice();
    writeStamp(expected, 42, 777.5);
    expect(Buffer.from(stamped, 'base64')).toEqual(Buffer.from(expected));
    expect(stampBase64Frame('AAAA', 1, 1)).toBe('AAAA');
  });
});

describe('stats', () => {
  it('percentiles by nearest rank', () => {
    const s = new Samples(2);
    for (let i = 1000; i >= 1; i--) s.add(i);
    const q = quantiles(s);
    expect(q).toEqual({ count: 1000, p50: 500, p99: 990, p999: 999, max: 1000 });
    expect(percentile([], 0.5)).toBeNull();
    expect(percentile([7], 0.999)).toBe(7);
  });

  it('caps samples and counts the rest', () => {
    const s = new Samples(2, 4);
    for (let i = 0; i < 10; i++) s.add(i);
    expect(s.count).toBe(4);
    expect(s.dropped).toBe(6);
  });

  it('slope is the per-call cost', () => {
    expect(slope([{ x: 50, y: 30 }, { x: 100, y: 35 }, { x: 200, y: 45 }])).toBeCloseTo(0.1, 10);
    expect(slope([{ x: 50, y: 30 }])).toBeNull();
    expect(slope([{ x: 50, y: 30 }, { x: 50, y: 40 }])).toBeNull();
  });

  it('formats tables and ratios', () => {
    const t = formatTable([
      ['relay', 'p99'],
      ['switchboard', '0.25'],
      ['baseline', '12.50'],
    ]);
    expect(t.split('\n')).toEqual(['relay        p99', '-----------  -----', 'switchboard   0.25', 'baseline     12.50']);
    expect(ratio(1, 4)).toBe('0.25x');
    expect(ratio(null, 4)).toBe('-');
    expect(ratio(1, 0)).toBe('-');
  });

  it('draws an SVG with one polyline per series', () => {
    const svg = svgLinePlot({
      title: 'p99 <ms>',
      xLabel: 'calls',
      yLabel: 'ms',
      series: [
        { name: 'a', color: 'red', points: [{ x: 50, y: 1 }, { x: 100, y: 2 }] },
        { name: 'b', color: 'blue', points: [{ x: 50, y: null }, { x: 100, y: 3 }] },
      ],
    });
    expect(svg).toMatch(/^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
    expect(svg.match(/<polyline/g)).toHaveLength(2);
    expect(svg).toContain('p99 &lt;ms&gt;');
  });
});

describe('/proc and /metrics parsing', () => {
  it('reads utime+stime after a comm with spaces and parens', () => {
    const stat = '1234 (node (x) y) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 11 0';
    expect(procCpuSeconds(stat)).toBeCloseTo(3, 5);
  });

  it('reads per-core busy and total jiffies', () => {
    const cores = procStatCores('cpu  10 0 10 80 0 0 0 0 0 0\ncpu0 5 0 5 40 0 0 0 0 0 0\ncpu1 5 0 5 30 10 0 0 0 0 0\nintr 1');
    expect(cores).toEqual([
      { busy: 10, total: 50 },
      { busy: 10, total: 50 },
    ]);
  });

  it('sums counter series matching labels (src/sim/prom-text.ts: labels parsed, not searched)', () => {
    const text = [
      '# TYPE switchboard_frames_dropped_total counter',
      'switchboard_frames_dropped_total{direction="caller_to_model",reason="ring_full"} 3',
      'switchboard_frames_dropped_total{direction="model_to_caller",reason="backpressure"} 4',
      'switchboard_frames_dropped_total{xdirection="model_to_caller",reason="a \\"quoted\\", direction=\\"model_to_caller\\""} 5',
      'switchboard_frames_dropped_total_other 100',
    ].join('\n');
    expect(metricSum(text, 'switchboard_frames_dropped_total')).toBe(12);
    expect(metricSum(text, 'switchboard_frames_dropped_total', { direction: 'model_to_caller' })).toBe(4);
    expect(metricSum(text, 'switchboard_frames_dropped_total', { reason: 'a "quoted", direction="model_to_caller"' })).toBe(5);
  });
});
