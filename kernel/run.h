/* `loupe run FILE.lua`: cells headless; returns the exit status (0, 1 on a cell error,
 * 2 when the file cannot be read). */
#ifndef LP_RUN_H
#define LP_RUN_H
int lp_run_file(const char *path);
#endif
