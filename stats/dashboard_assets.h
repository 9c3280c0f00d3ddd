/*
 * dashboard_assets.h: the dashboard's files (stats/dashboard/) as bytes compiled into the
 * binary. stats/dashboard_embed.sh generates the table's definition (a C file the Makefile
 * builds; it is not in the tree); stats/http.c serves whatever table its settings name, so
 * the unit tests pass a table of their own.
 */
#ifndef POSTINO_STATS_DASHBOARD_ASSETS_H
#define POSTINO_STATS_DASHBOARD_ASSETS_H

#include <stddef.h>

struct stats_asset {
	const char *name;         /* "index.html", "app.js": served at "/" or "/static/NAME" */
	const char *content_type; /* "text/html; charset=utf-8", ... */
	const unsigned char *data;
	size_t len;
};

/* Defined by the generated file. */
extern const struct stats_asset stats_dashboard_assets[];
extern const size_t stats_dashboard_assets_count;

#endif
