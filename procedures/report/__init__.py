"""What an operator reads: plots (plots, plot_maps), report.html (report_html) and the terminal
summaries (tables)."""
