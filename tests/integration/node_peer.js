// Node.js http server and client for the integration tests.
//   node node_peer.js server          prints its port, then serves:
//     /stream   a response written in five pieces (chunked transfer coding)
//     /echo     the request body back (chunked uploads included)
//     /upgrade  101 Switching Protocols, then echoes raw bytes
//   node node_peer.js client PORT     GET /stream and POST /echo (body written in pieces)
//                                     on one keep-alive connection; prints the results
const http = require("http");

const PARTS = ["alpha\n", "bravo\n", "charlie\n", "delta\n", "echo\n"];

function server() {
  const srv = http.createServer((req, res) => {
    if (req.url === "/stream") {
      res.writeHead(200, { "Content-Type": "text/plain" });
      let i = 0;
      const next = () => {
        if (i === PARTS.length) return res.end();
        res.write(PARTS[i++]);
        setTimeout(next, 5);
      };
      next();
    } else if (req.url === "/echo") {
      const chunks = [];
      req.on("data", (c) => chunks.push(c));
      req.on("end", () => {
        const body = Buffer.concat(chunks);
        res.writeHead(200, { "Content-Type": "application/octet-stream", "Content-Length": body.length });
        res.end(body);
      });
    } else {
      res.writeHead(404, { "Content-Length": 0 });
      res.end();
    }
  });
  srv.on("upgrade", (req, socket) => {
    socket.write("HTTP/1.1 101 Switching Protocols\r\nUpgrade: test\r\nConnection: Upgrade\r\n\r\n");
    socket.on("data", (d) => socket.write(d));
  });
  srv.keepAliveTimeout = 30000;
  srv.listen(0, "127.0.0.1", () => console.log(srv.address().port));
}

function client(port) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const get = () =>
    new Promise((resolve, reject) => {
      http.get({ port, host: "127.0.0.1", path: "/stream", agent }, (res) => {
        let body = "";
        res.on("data", (d) => (body += d));
        res.on("end", () => resolve(body));
      }).on("error", reject);
    });
  const post = () =>
    new Promise((resolve, reject) => {
      const req = http.request({ port, host: "127.0.0.1", path: "/echo", method: "POST", agent }, (res) => {
        let body = "";
        res.on("data", (d) => (body += d));
        res.on("end", () => resolve(body));
      });
      req.on("error", reject);
      // No Content-Length: Node sends the body with chunked transfer coding.
      for (const p of PARTS) req.write(p);
      req.end();
    });
  (async () => {
    const stream = await get();
    const echo = await post();
    console.log(JSON.stringify({ stream, echo }));
    agent.destroy();
  })();
}

if (process.argv[2] === "server") server();
else client(Number(process.argv[3]));
