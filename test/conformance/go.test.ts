// The conformance scenarios against the Go client (suite.ts).
import { conformance } from "./suite.js";

conformance("go");
