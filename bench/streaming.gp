# Perplexity per segment against stream position, from bench/streaming.sh's CSV files.
# gnuplot -e "out='out/streaming'" bench/streaming.gp
set terminal pngcairo size 1100,600 font 'Sans,10'
set output out.'/streaming.png'
set datafile separator ','
set key outside right
set grid
set logscale y
set format x '%.0s%c'
set title 'stories260K streamed over TinyStories: perplexity per segment'
set xlabel 'stream position (tokens)'
set ylabel 'perplexity per segment'
plot out.'/sink-1M.csv' using 3:6 every ::1 with lines lw 2 title 'sink 4+508', \
     out.'/window.csv'  using 3:6 every ::1 with lines lw 2 title 'window 512', \
     out.'/shift.csv'   using 3:6 every ::1 with lines lw 2 title 'shift 512 (llama.cpp context shift)', \
     out.'/full-8k.csv' using 3:6 every ::1 with linespoints lw 2 pt 7 title 'full (dense)'
