#!/usr/bin/perl
# dkim_verify.pl: verifies every DKIM-Signature of one message with Perl's Mail::DKIM (Debian
# libmail-dkim-perl), the second of the two independent verifiers test_dkim.py uses (the
# first is dkimpy, dkim_verify.py). No network: DNS answers come from a file.
#
#   perl dkim_verify.pl RECORDS MESSAGE
#
# RECORDS holds one TXT record a line, "NAME<TAB>STRING[<TAB>STRING...]" (NAME without the
# final dot; the strings as the record's character-strings, at most 255 octets each, joined
# by the verifier as a resolver's answer would be). A name not in the file is NXDOMAIN.
# MESSAGE is the message as stored (CRLF line ends).
#
# Output, one line each (values never hold a newline):
#   mail-dkim version=V net-dns=V ed25519=yes|no
#   signature index=N a=A d=D s=S result=R detail=TEXT
#   overall result=R detail=TEXT
# ed25519 says whether this Mail::DKIM can verify ed25519-sha256 (RFC 8463) at all.
# Exit status: 0 when the verifier ran (whatever the results), 2 on a usage or I/O error.
use strict;
use warnings;

use Mail::DKIM;
use Mail::DKIM::DNS;
use Mail::DKIM::Verifier;
use Net::DNS;

# A resolver object for Mail::DKIM::DNS::resolver(): answers from a table instead of the
# network. Mail::DKIM calls send(NAME, TYPE) and, when that returns nothing, errorstring().
package StaticResolver;

sub new {
	my ( $class, $records ) = @_;
	return bless { records => $records, errorstring => 'NOERROR' }, $class;
}

sub send {
	my ( $self, $name, $type ) = @_;
	$type = defined $type ? uc $type : 'A';
	my $key = lc $name;
	$key =~ s/\.$//;
	my $packet = Net::DNS::Packet->new( $name, $type, 'IN' );
	$packet->header->qr(1);
	$packet->header->aa(1);
	my $strings = $self->{records}{$key};
	if ( defined $strings && $type eq 'TXT' ) {
		$packet->push( answer => Net::DNS::RR->new(
			owner   => $name,
			type    => 'TXT',
			ttl     => 300,
			txtdata => [@$strings],
		) );
		$packet->header->rcode('NOERROR');
	} else {
		$packet->header->rcode( defined $strings ? 'NOERROR' : 'NXDOMAIN' );
	}
	$self->{errorstring} = $packet->header->rcode;
	return $packet;
}

sub query {
	my ( $self, $name, $type ) = @_;
	my $packet = $self->send( $name, $type );
	return scalar( $packet->answer ) ? $packet : undef;
}

sub errorstring { return $_[0]{errorstring} }

package main;

sub one_line {
	my ($text) = @_;
	$text = '' unless defined $text;
	$text =~ s/[\r\n]+/ /g;
	return $text;
}

if ( @ARGV != 2 ) {
	print STDERR "usage: perl dkim_verify.pl RECORDS MESSAGE\n";
	exit 2;
}
my ( $records_path, $message_path ) = @ARGV;

my %records;
open( my $rf, '<', $records_path ) or do { print STDERR "$records_path: $!\n"; exit 2 };
while ( my $line = <$rf> ) {
	chomp $line;
	next if $line eq '' || $line =~ /^#/;
	my ( $name, @strings ) = split /\t/, $line;
	$name = lc $name;
	$name =~ s/\.$//;
	$records{$name} = \@strings;
}
close $rf;

my $ed25519 = eval { require Mail::DKIM::Algorithm::ed25519_sha256; 1 } ? 'yes' : 'no';
print "mail-dkim version=$Mail::DKIM::VERSION net-dns=$Net::DNS::VERSION ed25519=$ed25519\n";

Mail::DKIM::DNS::resolver( StaticResolver->new( \%records ) );

open( my $mf, '<:raw', $message_path ) or do { print STDERR "$message_path: $!\n"; exit 2 };
my $verifier = Mail::DKIM::Verifier->new();
$verifier->load($mf);
close $mf;

my $index = 0;
foreach my $sig ( $verifier->signatures ) {
	next unless $sig->isa('Mail::DKIM::Signature');    # not DomainKeys
	printf "signature index=%d a=%s d=%s s=%s result=%s detail=%s\n", $index++,
	  one_line( $sig->algorithm ), one_line( $sig->domain ), one_line( $sig->selector ),
	  one_line( $sig->result ), one_line( $sig->result_detail );
}
printf "overall result=%s detail=%s\n", one_line( $verifier->result ),
  one_line( $verifier->result_detail );
exit 0;
