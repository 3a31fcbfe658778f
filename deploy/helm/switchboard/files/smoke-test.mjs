// `helm test`: the release answers through its Service. GET /readyz must be 200 and GET /metrics must
// carry switchboard_active_calls (the autoscaling signal). Runs with the relay image's node; no deps.
const base = process.env.SWITCHBOARD_URL;
if (!base) {
  console.error('SWITCHBOARD_URL is not set');
  process.exit(2);
}

async function get(path) {
  const res = await fetch(new URL(path, base), { signal: AbortSignal.timeout(5000) });
  return { status: res.status, body: await res.text() };
}

async function check() {
  const ready = await get('/readyz');
  if (ready.status !== 200) return `GET /readyz answered ${ready.status}: ${ready.body.slice(0, 200)}`;
  const metrics = await get('/metrics');
  if (metrics.status !== 200) return `GET /metrics answered ${metrics.status}`;
  if (!/^switchboard_active_calls(\{[^}]*\})? /m.test(metrics.body)) return 'GET /metrics has no switchboard_active_calls sample';
  return undefined;
}

const attempts = Number(process.env.SMOKE_ATTEMPTS ?? 10);
let problem = 'not checked';
for (let i = 1; i <= attempts; i++) {
  try {
    problem = await check();
  } catch (err) {
    problem = `${base}: ${err instanceof Error ? (err.cause?.message ?? err.message) : String(err)}`;
  }
  if (problem === undefined) {
    console.log(`ok: ${base} /readyz 200, /metrics has switchboard_active_calls`);
    process.exit(0);
  }
  console.error(`attempt ${i}/${attempts}: ${problem}`);
  if (i < attempts) await new Promise((r) => setTimeout(r, 2000));
}
process.exit(1);
