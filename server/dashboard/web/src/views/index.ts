// Every view registers itself on import: add a line here for a new view
// (the navigation lists the nav() entries in this order).
import "./login";
import "./overview";
import "./nodes";
import "./workloads";
import "./logs";
import "./logsearch";
import "./metrics";
import "./terminal";
import "./secrets";
import "./create";
import "./generic";
