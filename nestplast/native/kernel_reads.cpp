// nestplast: reads of NEST kernel state that NEST's Python interface makes slow, for ctypes.
//
// PyNEST converts each connection's whole status dictionary into a Python dict to read one
// weight (about 1 us per entry, 13 entries for a NESTML synapse), and a spike recorder's whole
// status, every event included, to read its event count. Here the same kernel calls run in C++
// and only the numbers cross into Python. Built against the installed NEST's headers by
// nestplast.kernel_reads, loaded after NEST (whose symbols it uses). No C++ exception may cross
// into ctypes: any error returns -1, and the caller falls back to NEST's Python interface, which
// raises NEST's own message.

#include <deque>
#include <string>

#include "connection_id.h"
#include "connection_manager.h"
#include "dictionary.h"
#include "kernel_manager.h"
#include "nest_names.h"
#include "node_manager.h"

extern "C" {

// The weights of this rank's connections of synapse model `model`, in the order of
// nest.GetConnections(synapse_model=model), every `step`-th from the first, into `out` (room for
// `capacity`). Returns how many connections there are (nothing written if more than `capacity` x
// `step`), or -1 on an error (e.g. an unknown model).
long
nestplast_model_weights( const char* model, long step, double* out, long capacity )
{
  try
  {
    Dictionary params;
    params[ nest::names::synapse_model ] = std::string( model );
    const std::deque< nest::ConnectionID > connections = nest::kernel().connection_manager.get_connections( params );
    const long n = static_cast< long >( connections.size() );
    if ( step < 1 or ( n + step - 1 ) / step > capacity )
    {
      return n;
    }
    for ( long i = 0; i < n; i += step )
    {
      const nest::ConnectionID& c = connections[ i ];
      const Dictionary status = nest::kernel().connection_manager.get_synapse_status( c.get_source_node_id(),
        c.get_target_node_id(), c.get_target_thread(), c.get_synapse_model_id(), c.get_port() );
      out[ i / step ] = status.get< double >( nest::names::weight );
    }
    return n;
  }
  catch ( ... )
  {
    return -1;
  }
}

// A recording device's n_events on this rank (as NodeCollection.get("n_events") reads it), or -1.
long
nestplast_n_events( long node_id )
{
  try
  {
    const Dictionary status = nest::kernel().node_manager.get_status( node_id );
    return status.get< long >( nest::names::n_events );
  }
  catch ( ... )
  {
    return -1;
  }
}
}
