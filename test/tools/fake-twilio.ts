/** A local stand-in for Twilio's REST API: records each request and answers like api.twilio.com. */
import { createServer, type IncomingMessage, type Server } from 'node:http';

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
  /** Answer the next requests with this status/body instead of 200 (e.g. 404 / 20404). */
  failWith(status: number, body: Record<string, unknown>): void;
  /** Resolves with the next request recorded. */
  next(): Promise<RecordedRequest>;
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
  let failure: { status: number; body: Record<string, unknown> } | undefined;
  const waiters: ((r: RecordedRequest) => void)[] = [];
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
      res.setHeader('content-type', 'application/json');
      if (failure) {
        res.statusCode = failure.status;
        res.end(JSON.stringify(failure.body));
        return;
      }
      const sid = /Calls\/(CA[0-9a-f]+)\.json/.exec(rec.path)?.[1] ?? 'CA0';
      res.end(JSON.stringify({ sid, account_sid: 'AC0', status: rec.form['Status'] ?? 'in-progress' }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    failWith(status, body) {
      failure = { status, body };
    },
    next: () => new Promise((resolve) => waiters.push(resolve)),
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
