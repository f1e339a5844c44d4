import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["server/src/**/*.test.ts", "clients/ts/src/**/*.test.ts", "test/**/*.test.ts"],
    // Integration tests run server/dist and the clients' builds: build them first.
    globalSetup: ["test/support/global-setup.ts"],
    // Integration tests start real server and worker processes.
    pool: "forks",
    testTimeout: 60_000,
    hookTimeout: 30_000,
  },
});
