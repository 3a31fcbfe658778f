/**
 * The benchmark's tenant. The relays under test speak to the simulated model through the `openai`
 * provider (the production code path), and a real provider refuses the demo account and inline
 * tokens: the bench tenant has its own account and takes its token from the environment.
 */
export const BENCH_ACCOUNT_SID = 'ACbe0c0000000000000000000000000000';
export const BENCH_AUTH_TOKEN = 'bench-auth-token-not-secret';
/** The variable bench/tenants.yaml names for the token. */
export const BENCH_TOKEN_VAR = 'TENANT_BENCH_TWILIO_AUTH_TOKEN';
