/**
 * A local stand-in for Twilio's REST API: records each request and answers like api.twilio.com.
 * Like Twilio, a call update (new TwiML, or a status) ends that call's media stream (`stop`, then
 * the socket closes) when the test connected one, before the HTTP answer goes out.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';

export interface RecordedRequest {
  method: string;
  path: string;
  authorization: string;
  contentType: string;
  form: Record<string, string>;
}

export interface FakeTwilio {
  url: string;
  requests: RecordedRequest[];
  /** Answer the next requests with this status/body (and headers, e.g. Retry-After) instead of 200 (e.g. 404 / 20404). */
  failWith(status: number, body: Record<string, unknown>, headers?: Record<string, string>): void;
  /** Answer 200 again. */
  succeed(): void;
  /** Resolves with the next request recorded. */
  next(): Promise<RecordedRequest>;
  /** The call's media stream: `stop` sends Twilio's `stop` and closes it (e.g. a sim caller's abort). */
  connectStream(callSid: string, stop: () => void): void;
  /** Answer each request this long after acting on it (Twilio's answer can trail the stream's stop). */
  answerDelayMs: number;
  close(): Promise<void>;
}

function readAll(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

export async function startFakeTwilio(): Promise<FakeTwilio> {
  const requests: RecordedRequest[] = [];
  let failure: { status: number; body: Record<string, unknown>; headers: Record<string, string> } | undefined;
  const waiters: ((r: RecordedRequest) => void)[] = [];
  const streams = new Map<string, () => void>();
  const server: Server = createServer((req, res) => {
    void readAll(req).then((body) => {
      const rec: RecordedRequest = {
        method: req.method ?? '',
        path: req.url ?? '',
        authorization: req.headers.authorization ?? '',
        contentType: req.headers['content-type'] ?? '',
        form: Object.fromEntries(new URLSearchParams(body)),
      };
      requests.push(rec);
      waiters.shift()?.(rec);
      const sid = /Calls\/(CA[0-9a-f]+)\.json/.exec(rec.path)?.[1] ?? 'CA0';
      if (!failure && (rec.form['Twiml'] !== undefined || rec.form['Status'] !== undefined)) {
        const stop = streams.get(sid);
        streams.delete(sid);
        stop?.();
      }
      setTimeout(() => answer(res, rec, sid), fake.answerDelayMs);
    });
  });
  function answer(res: ServerResponse, rec: RecordedRequest, sid: string): void {
    res.setHeader('content-type', 'application/json');
    if (failure) {
      res.statusCode = failure.status;
      for (const [k, v] of Object.entries(failure.headers)) res.setHeader(k, v);
      res.end(JSON.stringify(failure.body));
      return;
    }
    res.end(JSON.stringify({ sid, account_sid: 'AC0', status: rec.form['Status'] ?? 'in-progress' }));
  }
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  const fake: FakeTwilio = {
    url: `http://127.0.0.1:${port}`,
    requests,
    failWith(status, body, headers = {}) {
      failure = { status, body, headers };
    },
    succeed() {
      failure = undefined;
    },
    next: () => new Promise((resolve) => waiters.push(resolve)),
    connectStream(callSid, stop) {
      streams.set(callSid, stop);
    },
    answerDelayMs: 0,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
  return fake;
}
