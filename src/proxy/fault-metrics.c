/* fault metrics: GET /metrics of the fault API (toxiproxy-server -proxy-metrics): bytes
 * received and sent per proxy and direction, in Prometheus text with Toxiproxy's names and
 * labels. Called under the fault lock; reads counters through the engine's command queue. */
#include "proxy/fault-internal.h"

/* Prometheus label value: backslash, quote and newline escaped. */
static void prom_str(struct buf *b, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == '"')
			buf_addc(b, '\\');
		if (*s == '\n')
			buf_adds(b, "\\n");
		else
			buf_addc(b, *s);
	}
}

int fault__metrics(struct fault *f, struct fault_reply *out)
{
	static const char *const names[2] = { "toxiproxy_proxy_received_bytes_total",
					       "toxiproxy_proxy_sent_bytes_total" };
	struct buf *b = &out->body;
	for (int m = 0; m < 2; m++) {
		buf_addf(b, "# HELP %s The total bytes %s\n# TYPE %s counter\n", names[m],
			 m ? "sent to the destination" : "received from the source", names[m]);
		for (size_t i = 0; i < f->n; i++) {
			struct proxy_stats st;
			if (proxy_engine_stats(f->eng, f->v[i]->id, &st) < 0)
				continue;
			uint64_t v[2][2] = { { st.bytes_up, st.bytes_down },
					     { st.bytes_sent_up, st.bytes_sent_down } };
			for (int d = 0; d < 2; d++) {
				buf_addf(b, "%s{direction=\"%s\",listener=\"", names[m],
					 d ? "downstream" : "upstream");
				prom_str(b, f->v[i]->listen);
				buf_adds(b, "\",proxy=\"");
				prom_str(b, f->v[i]->name);
				buf_adds(b, "\",upstream=\"");
				prom_str(b, f->v[i]->upstream);
				buf_addf(b, "\"} %llu\n", (unsigned long long)v[m][d]);
			}
		}
	}
	out->status = 200;
	out->json_type = false;
	return 200;
}

