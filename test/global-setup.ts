/**
 * Runs once before the suite: makes sure the real servers the tests spawn are installed.
 * No test is skipped for a missing dependency: we install it (Debian, as root) or stop with one line.
 */
import { execFileSync } from 'node:child_process';

function has(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function ensure(cmd: string, debPackage: string): void {
  if (has(cmd)) return;
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  if (isRoot && has('apt-get')) {
    console.log(`[setup] ${cmd} missing: installing Debian package ${debPackage}`);
    execFileSync('sh', ['-c', `apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ${debPackage}`], {
      stdio: 'inherit',
    });
    if (has(cmd)) return;
  }
  throw new Error(`${cmd} is required by the test suite: install it with 'apt-get install -y ${debPackage}' and run again`);
}

export default function setup(): void {
  ensure('redis-server', 'redis-server');
  ensure('promtool', 'prometheus');
}
